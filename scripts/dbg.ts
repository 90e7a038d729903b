import { runSeed } from "../src/sim/index.js";
process.on("exit", (c) => console.log("exit", c));
const r = await runSeed({ seed: 1, activeMs: 5000, faults: false, keep: true });
console.log(r);
