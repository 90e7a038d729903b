export { runSeed } from "./run.js";
export type { SimOptions, SimResult } from "./run.js";
export { Scheduler } from "./scheduler.js";
export type { SimProcess } from "./scheduler.js";
export { SimDisk } from "./disk.js";
export { Network } from "./network.js";
export { SimCluster } from "./cluster.js";
export { checkCluster } from "./check.js";
