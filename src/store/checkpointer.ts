/**
 * Runs SQLite WAL checkpoints on a worker thread with its own connection.
 *
 * better-sqlite3 is synchronous: an automatic checkpoint runs inside whichever COMMIT crosses
 * the threshold and fsyncs the database file on the event loop, stalling every append and
 * every batch apply behind it for milliseconds to tens of milliseconds (it showed as the
 * replication lag tail). With autocheckpoint off on the main connection, a PASSIVE checkpoint
 * here copies committed pages without blocking the writer.
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

const workerSource = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 5000");
let busy = false;
function checkpoint() {
  if (busy) return;
  busy = true;
  try {
    const [r] = db.pragma("wal_checkpoint(PASSIVE)");
    parentPort.postMessage({ kind: "checkpoint", log: r.log, checkpointed: r.checkpointed });
  } catch (err) {
    parentPort.postMessage({ kind: "error", message: String(err && err.message || err) });
  } finally {
    busy = false;
  }
}
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on("message", (m) => {
  if (m !== "stop") return;
  clearInterval(timer);
  db.close();
  parentPort.postMessage({ kind: "stopped" });
});
`;

export interface Checkpointer {
  stop(): Promise<void>;
}

export function startCheckpointer(
  path: string,
  intervalMs: number,
  onError: (message: string) => void,
): Checkpointer {
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const worker = new Worker(workerSource, { eval: true, workerData: { path, intervalMs, driver } });
  worker.unref();
  worker.on("message", (m: { kind: string; message?: string }) => {
    if (m.kind === "error") onError(m.message ?? "checkpoint failed");
  });
  worker.on("error", (err) => onError(err.message));
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        const done = () => resolve();
        worker.once("exit", done);
        worker.on("message", (m: { kind: string }) => {
          if (m.kind === "stopped") void worker.terminate();
        });
        worker.postMessage("stop");
      }),
  };
}
