export { HybridClock, compareHlc, formatHlc, parseHlc } from "./hlc.js";
export type { Hlc, HybridClockOptions } from "./hlc.js";
