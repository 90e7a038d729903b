/**
 * Child process for the crash test: appends forever under concurrency and prints one line per
 * acknowledged record ("lsn round i"). The parent kills it with SIGKILL at a random moment.
 */
import { Wal } from "../../src/wal/index.js";

const [dir, roundArg, seedArg] = process.argv.slice(2);
const round = Number(roundArg);
let state = Number(seedArg) >>> 0;
const rand = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 4294967296;

const wal = await Wal.open({ dir: dir!, region: "us-east-1", segmentBytesMax: 32 * 1024 });
process.stdout.write(`ready ${wal.durableLsn}\n`);
const concurrency = 1 + Math.floor(rand() * 64);
let i = 0;
const body = (n: number) => ({ round, i: n, pad: "x".repeat(n % 300) });

async function worker(): Promise<void> {
  for (;;) {
    if (rand() < 0.1) {
      const n = 1 + Math.floor(rand() * 50);
      const first = i;
      i += n;
      const recs = Array.from({ length: n }, (_, k) => ({
        key: `r${round}-${first + k}`,
        tenant: "t",
        outcome: "accepted",
        body: body(first + k),
      }));
      const acks = await wal.appendBatch(recs);
      process.stdout.write(acks.map((a, k) => `${a.lsn} ${round} ${first + k}\n`).join(""));
    } else {
      const n = i++;
      const ack = await wal.append({
        key: `r${round}-${n}`,
        tenant: "t",
        outcome: "accepted",
        body: body(n),
      });
      process.stdout.write(`${ack.lsn} ${round} ${n}\n`);
    }
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
