/**
 * npm run sim -- --seed S        one run, its problems and the command that replays it
 * npm run sim -- --seeds N [--from F]   N runs from seed F (default 1); exits 1 on the first failure
 *   --store postgres [--pg-url URL]     the regions' stores on PostgreSQL: the server at URL, or
 *                                       a temporary cluster started here and stopped at the end
 *                                       (a search: a seed is not replayed byte for byte);
 *                                       some regions served by 2 or 3 nodes, by the seed
 *   --one-node                          on PostgreSQL too, one node per region
 */
import { parseArgs } from "node:util";
import { startPostgres, type PostgresServer } from "../src/bench/postgres.js";
import { runSeed } from "../src/sim/index.js";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    seeds: { type: "string" },
    from: { type: "string" },
    "active-ms": { type: "string" },
    keep: { type: "boolean" },
    trace: { type: "boolean" },
    store: { type: "string", default: "sqlite" },
    "pg-url": { type: "string" },
    "one-node": { type: "boolean" },
  },
});
if (values.store !== "sqlite" && values.store !== "postgres") {
  console.error(`--store: expected sqlite or postgres, got ${values.store}`);
  process.exit(2);
}
let server: PostgresServer | undefined;
const postgres =
  values.store === "postgres" ? { url: values["pg-url"] ?? (server = await startPostgres()).url } : undefined;
const severalNodes = !values["one-node"];
const storeFlag = postgres
  ? ` --store postgres${values["pg-url"] ? " --pg-url URL" : ""}${severalNodes ? "" : " --one-node"}`
  : "";
/** Stop the cluster started here (by its PID), then exit. */
async function finish(code: number): Promise<never> {
  await server?.stop();
  process.exit(code);
}
const activeMs = values["active-ms"] ? Number(values["active-ms"]) : undefined;
const seeds =
  values.seed !== undefined
    ? [Number(values.seed)]
    : Array.from({ length: Number(values.seeds ?? 10) }, (_, i) => Number(values.from ?? 1) + i);
let simMs = 0;
let wallMs = 0;
for (const seed of seeds) {
  const r = await runSeed({
    seed,
    activeMs,
    keep: values.keep,
    trace: values.trace,
    postgres,
    severalNodes,
  }).catch(async (err: unknown) => {
    // A run that cannot go on (a loop that never waits) is a failure of its seed too.
    console.log(`seed ${seed}: FAILED (the run stopped: ${(err as Error).message})`);
    console.log(
      `replay: npm run sim -- --seed ${seed}${activeMs ? ` --active-ms ${activeMs}` : ""}${storeFlag} --keep`,
    );
    return finish(1);
  });
  simMs += r.simMs;
  wallMs += r.wallMs;
  console.log(
    `seed ${seed}: ${r.ok ? "ok" : "FAILED"} store=${r.store} regions=${r.regions}${r.nodes > r.regions ? ` nodes=${r.nodes}` : ""} acked=${r.acknowledged} given-up=${r.givenUp} crashes=${r.crashes}${r.compression ? ` coded=${r.codedBatches}` : ""} sim=${(r.simMs / 1000).toFixed(0)}s wall=${(r.wallMs / 1000).toFixed(1)}s trace=${r.traceHash.slice(0, 12)}`,
  );
  if (!r.ok) {
    for (const p of r.problems.slice(0, 30)) console.log(`  ${p}`);
    if (values.trace) for (const l of r.lines.filter((x) => !x.includes(" ack "))) console.log(`  | ${l}`);
    console.log(
      `replay: npm run sim -- --seed ${seed}${activeMs ? ` --active-ms ${activeMs}` : ""}${storeFlag} --keep   (data: ${r.dir})`,
    );
    await finish(1);
  }
}
console.log(`${seeds.length} seeds ok; ${(simMs / wallMs).toFixed(0)} simulated seconds per wall second`);
await finish(0);
