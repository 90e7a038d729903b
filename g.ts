import { runSeed } from "./src/sim/index.js";
import { SimCluster } from "./src/sim/cluster.js";
// Capture the cluster by patching checkCluster via prototype hook.
const orig = SimCluster.prototype.up;
let cluster: SimCluster | undefined;
SimCluster.prototype.up = function () { cluster = this; return orig.call(this); };
const r = await runSeed({ seed: 17, keep: true });
const c = cluster!;
console.log("tenants", JSON.stringify(c.o.tenants));
for (const n of c.nodes.values()) {
  const st = n.region!.store;
  const v = st.streamVersions("r3", "180401306614fba12a4079d18277a9a6", 1, 100, 100);
  const w = (await st.watermarks()).filter((x) => x.origin === "r3");
  console.log(n.name, "holds old r3:", v.map((x) => x.lsn).join(","), "wm:", JSON.stringify(w.map((x) => [x.incarnation.slice(0, 8), x.lsn])));
}
console.log(r.ok);
