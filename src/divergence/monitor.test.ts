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

/** Wait for `check` to pass, with a deadline generous enough for a loaded machine. */
const eventually = <T>(check: () => T) => vi.waitFor(check, { timeout: 30_000, interval: 5 });

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

describe("DivergenceMonitor's timers and scrub", () => {
  /** A runtime whose `every` timers the test fires by hand. */
  function handTimers() {
    const timers: Array<{ ms: number; fn: () => void; cancelled: boolean }> = [];
    const runtime = {
      ...realRuntime,
      every: (ms: number, fn: () => void) => {
        const t = { ms, fn, cancelled: false };
        timers.push(t);
        return { cancel: () => void (t.cancelled = true) };
      },
    };
    return { runtime, timers };
  }

  it("scans every intervalMs and scrubs a slice every scrubIntervalMs until stopped", async () => {
    const { runtime, timers } = handTimers();
    const scanned: string[] = [];
    const { m, store } = monitor(async (peer) => (scanned.push(peer), scanOf(peer)), {
      runtime,
      intervalMs: 30_000,
      scrubIntervalMs: 5_000,
      scrubBucketsPerTick: 100,
    });
    const scrub = vi.spyOn(store, "scrub");
    m.start();
    expect(timers.map((t) => t.ms)).toEqual([30_000, 5_000]);
    timers[0]!.fn();
    await eventually(() => expect(scanned).toEqual(["eu-west-1", "ap-south-1"]));
    timers[1]!.fn();
    await eventually(() => expect(scrub).toHaveBeenCalledWith(0, 100));
    m.stop();
    expect(timers.every((t) => t.cancelled)).toBe(true);
  });

  it("scrubs the buckets slice after slice, wrapping at the last, and says when content changed outside the engine", async () => {
    const { m, store, lines } = monitor(async (peer) => scanOf(peer));
    const from: number[] = [];
    let wrong: number[] = [];
    vi.spyOn(store, "scrub").mockImplementation(async (start: number) => (from.push(start), wrong));
    expect(await m.scrubSlice(40_000)).toBe(0);
    expect(lines.filter((l) => l.level === "error")).toEqual([]);
    wrong = [7, 9];
    expect(await m.scrubSlice(40_000)).toBe(2);
    expect(await m.scrubSlice(10)).toBe(2);
    expect(from).toEqual([0, 40_000, 80_000 - 65_536]);
    expect(lines.filter((l) => l.level === "error").map((l) => l.msg)).toEqual([
      "store content changed outside the engine; digests corrected so the detector sees it",
      "store content changed outside the engine; digests corrected so the detector sees it",
    ]);
  });

  it("never runs two scrub slices at once, and a failed slice is logged every time without stopping the next", async () => {
    const { runtime, timers } = handTimers();
    const { m, store, lines } = monitor(async (peer) => scanOf(peer), { runtime });
    let release!: () => void;
    let fail = false;
    const calls = vi.spyOn(store, "scrub").mockImplementation(async () => {
      if (fail) throw new Error("disk I/O error");
      await new Promise<void>((r) => (release = r));
      return [];
    });
    m.start();
    const tick = timers[1]!.fn;
    tick();
    tick(); // the first slice is still running
    await eventually(() => expect(calls).toHaveBeenCalledTimes(1));
    release();
    await eventually(() => {
      tick(); // the next tick, once the first slice ended, runs
      expect(calls).toHaveBeenCalledTimes(2);
    });
    release();
    fail = true;
    for (const n of [3, 4])
      await eventually(() => {
        tick(); // runs once the slice before it has ended
        expect(calls).toHaveBeenCalledTimes(n);
      });
    await eventually(() =>
      expect(lines.filter((l) => l.msg === "scrub failed").map((l) => l.level)).toEqual(["error", "error"]),
    );
    m.stop();
  });
});

describe("DivergenceMonitor's report", () => {
  it("drops the findings of a peer it compared and no longer finds, keeping only the unreachable peer's", async () => {
    let down = false;
    const { m } = monitor(async (peer) => {
      if (down && peer === "eu-west-1") throw new Error("down");
      return down ? scanOf(peer) : scanOf(peer, [finding(`k-${peer}`, peer)]);
    });
    expect((await m.scan()).findings.map((f) => f.key)).toEqual(["k-eu-west-1", "k-ap-south-1"]);
    down = true;
    expect((await m.scan()).findings.map((f) => f.key)).toEqual(["k-eu-west-1"]);
    expect(m.findings.map((f) => f.key)).toEqual(["k-eu-west-1"]);
  });

  it("keeps the findings of every unreachable peer, not only when one is down", async () => {
    let down = false;
    const { m } = monitor(async (peer) => {
      if (down) throw new Error(`${peer} down`);
      return scanOf(peer, [finding(`k-${peer}`, peer)]);
    });
    await m.scan();
    down = true;
    expect((await m.scan()).findings.map((f) => f.key).sort()).toEqual(["k-ap-south-1", "k-eu-west-1"]);
    expect(m.errors.map((e) => e.peer).sort()).toEqual(["ap-south-1", "eu-west-1"]);
  });

  it("logs each new finding as an error, times the scan in seconds, and works without an error callback", async () => {
    let monoMs = 10_000;
    const seconds: number[] = [];
    const { m, lines } = monitor(
      async (peer) => {
        monoMs += 750;
        if (peer === "ap-south-1") throw new Error("refused");
        return scanOf(peer, [finding("k1", peer)]);
      },
      {
        runtime: { ...realRuntime, monoMs: () => monoMs },
        onScan: (_report, s) => void seconds.push(s),
        onScanError: undefined,
      },
    );
    expect(m.errors).toEqual([]);
    const report = await m.scan();
    expect(report.durationMs).toBe(1_500);
    expect(seconds).toEqual([1.5]);
    expect(m.errors).toEqual([{ peer: "ap-south-1", error: "refused" }]);
    expect(lines.filter((l) => l.msg === "divergence found").map((l) => l.level)).toEqual(["error"]);
    // A peer never in error is never "compared again".
    expect(lines.some((l) => /compares with the peer again/.test(l.msg))).toBe(false);
  });

  it("answers a repair's question about some keys from the detector, now", async () => {
    const checkKeys = vi.fn(async () => [finding("k1", "eu-west-1")]);
    const { m } = monitor(async (peer) => scanOf(peer));
    (m as unknown as { o: { detector: { checkKeys: unknown } } }).o.detector.checkKeys = checkKeys;
    expect((await m.checkKeys("eu-west-1", ["k1"])).map((f) => f.key)).toEqual(["k1"]);
    expect(checkKeys).toHaveBeenCalledWith("eu-west-1", ["k1"]);
  });
});
