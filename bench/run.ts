/**
 * Benchmark entry point: `npm run bench -- NAME [options]`. Benchmarks measure; tests check
 * behaviour. Each writes bench/results/NAME.json and NAME.md.
 */
import { parseArgs } from "node:util";
import { runBench } from "../src/cli/bench.js";
import { benchDivergence } from "./divergence.js";
import { benchCompression } from "./compression.js";
import { benchHttp } from "./http.js";
import { benchReplication } from "./replication.js";
import { benchS3Link } from "./s3-link.js";
import { benchSecurity } from "./security.js";
import { benchStore } from "./store.js";
import { benchWal } from "./wal.js";

// `npm run bench -- slo --scenario FILE [...]` is `crr bench` with the same arguments.
if (process.argv[2] === "slo") {
  process.exitCode = await runBench(process.argv.slice(3));
  process.exit();
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: "string", default: "5" },
    seconds: { type: "string", default: "2" },
    "recovery-gib": { type: "string", default: "1" },
    keys: { type: "string", default: "1000000" },
    connections: { type: "string", default: "64" },
    rate: { type: "string", default: "500" },
    records: { type: "string", default: "50000" },
    seed: { type: "string" },
  },
});

const name = positionals[0];
switch (name) {
  case "store":
    await benchStore({ rounds: Number(values.rounds), records: Number(values.records) });
    break;
  case "wal":
    await benchWal({
      rounds: Number(values.rounds),
      seconds: Number(values.seconds),
      recoveryGiB: Number(values["recovery-gib"]),
    });
    break;
  case "replication":
    await benchReplication({ seconds: Number(values.seconds), rounds: Number(values.rounds) });
    break;
  case "security":
    await benchSecurity({ rounds: Number(values.rounds), seconds: Number(values.seconds) });
    break;
  case "http":
    await benchHttp({
      rounds: Number(values.rounds),
      seconds: Number(values.seconds),
      connections: Number(values.connections),
      seed: values.seed === undefined ? undefined : Number(values.seed),
    });
    break;
  case "compression":
    await benchCompression({ rounds: Number(values.rounds === "5" ? "2" : values.rounds) });
    break;
  case "s3-link":
    await benchS3Link({
      rounds: Number(values.rounds === "5" ? "3" : values.rounds),
      seconds: Number(values.seconds === "2" ? "10" : values.seconds),
      rate: Number(values.rate),
    });
    break;
  case "divergence":
    await benchDivergence({ keys: Number(values.keys), rounds: Number(values.rounds) });
    break;
  default:
    process.stderr.write(
      "usage: npm run bench -- wal [--rounds N] [--seconds S] [--recovery-gib G]\n       npm run bench -- replication [--rounds N] [--seconds S]\n       npm run bench -- divergence [--keys N] [--rounds N]\n       npm run bench -- security [--rounds N] [--seconds S]\n       npm run bench -- http [--rounds N] [--seconds S] [--connections C] [--seed S]\n       npm run bench -- compression [--rounds N]\n       npm run bench -- s3-link [--rounds N] [--seconds S] [--rate R]\n",
    );
    process.exitCode = 2;
}
