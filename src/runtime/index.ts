export { anySignal, nextTurn, realRuntime, shiftedRuntime, sleep, timeoutSignal } from "./runtime.js";
export type { Runtime, Timer } from "./runtime.js";
