import { describe, expect, it, vi } from "vitest";
import type { Logger } from "../log.js";
import { realRuntime } from "../runtime/index.js";
import { SqliteStore } from "../store/index.js";
import type { Finding } from "./classify.js";
import type { DivergenceDetector, PeerScan } from "./detector.js";
import { DivergenceMonitor, type MonitorOptions } from "./monitor.js";

/** A logger that keeps what was logged at each level. */
function recordingLog(): { log: Logger; lines: Array<{ level: string; msg: string }> } {
  const lines: Array<{ level: string; msg: string }> = [];
  const at =
    (level: string) =>
    (...args: unknown[]) =>
      void lines.push({ level, msg: String(args.find((a) => typeof a === "string")) });
  const log = {
    trace: at("trace"),
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    fatal: at("fatal"),
  } as unknown as Logger;
  return { log, lines };
}

const scanOf = (peer: string, findings: Finding[] = []): PeerScan => ({
  peer,
  findings,
  bucketsDiffering: findings.length,
  keysCompared: 0,
  bytes: 0,
  durationMs: 0,
});

const finding = (key: string, remote: string): Finding => ({
  kind: "divergent",
  key,
  local: "us-east-1",
  remote,
  localVersion: undefined,
  remoteVersion: undefined,
  watermarks: { local: {}, remote: {} },
  reason: "watermark",
});

function monitor(scanPeer: (peer: string) => Promise<PeerScan>, o: Partial<MonitorOptions> = {}) {
  const store = new SqliteStore({ path: ":memory:", rule: { kind: "first-write-wins" } });
  const { log, lines } = recordingLog();
  const errors: Array<[string, string]> = [];
  const m = new DivergenceMonitor({
    detector: { scanPeer } as unknown as DivergenceDetector,
    store,
    peers: ["eu-west-1", "ap-south-1"],
    intervalMs: 60_000,
    scrubIntervalMs: 60_000,
    scrubBucketsPerTick: 1,
    log,
    runtime: realRuntime,
    onScan: () => undefined,
    onNewFinding: async () => undefined,
    onScanError: (peer, error) => void errors.push([peer, error]),
    ...o,
  });
  return { m, store, lines, errors };
}

describe("DivergenceMonitor", () => {
  it("shows a peer it cannot compare: counted every time, logged when the error changes, in the report", async () => {
    let answer = "eu-west-1 answered 413";
    const { m, lines, errors } = monitor(async (peer) => {
      if (peer === "eu-west-1") throw new Error(answer);
      return scanOf(peer);
    });
    const first = await m.scan();
    await m.scan();
    answer = "connection refused";
    await m.scan();
    expect(first.errors).toEqual([{ peer: "eu-west-1", error: "eu-west-1 answered 413" }]);
    expect(m.errors).toEqual([{ peer: "eu-west-1", error: "connection refused" }]);
    expect(errors).toHaveLength(3);
    const logged = lines.filter((l) => l.msg === "divergence scan could not compare with a peer");
    expect(logged.map((l) => l.level)).toEqual(["error", "error"]);
  });

  it("keeps the findings of a peer it could not compare this time, and says when it compares again", async () => {
    let down = false;
    const { m, lines } = monitor(async (peer) => {
      if (down && peer === "eu-west-1") throw new Error("down");
      return scanOf(peer, peer === "eu-west-1" ? [finding("k1", peer)] : []);
    });
    await m.scan();
    down = true;
    expect((await m.scan()).findings.map((f) => f.key)).toEqual(["k1"]);
    down = false;
    await m.scan();
    expect(lines.some((l) => l.level === "info" && /compares with the peer again/.test(l.msg))).toBe(true);
  });

  it("reports each new finding once", async () => {
    const onNewFinding = vi.fn(async () => undefined);
    const { m } = monitor(async (peer) => scanOf(peer, [finding("k1", peer)]), { onNewFinding });
    await m.scan();
    await m.scan();
    expect(onNewFinding).toHaveBeenCalledTimes(2); // once per peer, not once per scan
  });

  it("a full scrub asked while a periodic scan runs happens after it, not joined into it", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { m, store } = monitor(async (peer) => {
      await gate;
      return scanOf(peer);
    });
    const scrub = vi.spyOn(store, "scrub");
    const periodic = m.scan();
    const verify = m.scan({ fullScrub: true });
    release();
    await Promise.all([periodic, verify]);
    expect(scrub).toHaveBeenCalledTimes(1);
  });
});
