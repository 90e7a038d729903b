import type { RegionStatus } from "../node/index.js";
import { CliUsageError, parseCommand } from "./args.js";
import { adminCredentialFromEnv, callNode } from "./http.js";

const drainHelp = `crr drain --url URL [--timeout-ms N] [--json]

Stops the node accepting appends (they get 503 with Retry-After), then waits until every
peer has acknowledged everything durable there, showing progress. Exit 0 when drained,
1 on timeout (default 60000 ms; the node stays draining), 2 on bad arguments.
'crr undrain --url URL' accepts appends again.`;

const undrainHelp = `crr undrain --url URL

Makes a drained node accept appends again.`;

const behind = (s: RegionStatus) =>
  s.peers.filter((p) => p.behindRecords > 0).map((p) => `${p.peer} ${p.behindRecords} behind`);

export async function runDrain(argv: string[]): Promise<number> {
  const { values } = parseCommand("drain", argv, {
    url: { type: "string" },
    "timeout-ms": { type: "string" },
    json: { type: "boolean" },
  });
  if (values.help) {
    process.stdout.write(`${drainHelp}\n`);
    return 0;
  }
  if (typeof values.url !== "string") throw new CliUsageError(`drain: --url URL is required\n\n${drainHelp}`);
  const timeoutMs = Number(values["timeout-ms"] ?? 60_000);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new CliUsageError("drain: --timeout-ms must be a positive number");
  const say = (line: string) => {
    if (!values.json) process.stdout.write(`${line}\n`);
  };
  const credential = await adminCredentialFromEnv(values.url);
  let s = await callNode<RegionStatus>(values.url, "v1/admin/drain", { method: "POST", credential });
  const target = s.wal.durableLsn;
  say(
    `${s.region} is draining: appends refused; waiting for ${s.peers.length} peers to acknowledge LSN ${target}`,
  );
  const started = Date.now();
  let last = "";
  while (!s.caughtUp) {
    if (Date.now() - started > timeoutMs) {
      say(
        `timed out after ${timeoutMs} ms: ${behind(s).join(", ")} (the node stays draining; 'crr undrain' to resume)`,
      );
      if (values.json) process.stdout.write(`${JSON.stringify({ drained: false, status: s })}\n`);
      return 1;
    }
    const progress = behind(s).join(", ");
    if (progress !== last) say(`  waiting: ${progress}`);
    last = progress;
    await new Promise((r) => setTimeout(r, 250));
    s = await callNode<RegionStatus>(values.url, "v1/status");
  }
  say(
    `drained in ${((Date.now() - started) / 1000).toFixed(1)} s: every peer has acknowledged LSN ${s.wal.durableLsn}`,
  );
  if (values.json) process.stdout.write(`${JSON.stringify({ drained: true, status: s })}\n`);
  return 0;
}

export async function runUndrain(argv: string[]): Promise<number> {
  const { values } = parseCommand("undrain", argv, { url: { type: "string" } });
  if (values.help) {
    process.stdout.write(`${undrainHelp}\n`);
    return 0;
  }
  if (typeof values.url !== "string")
    throw new CliUsageError(`undrain: --url URL is required\n\n${undrainHelp}`);
  const s = await callNode<RegionStatus>(values.url, "v1/admin/undrain", {
    method: "POST",
    credential: await adminCredentialFromEnv(values.url),
  });
  process.stdout.write(`${s.region} accepts appends again\n`);
  return 0;
}
