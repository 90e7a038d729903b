/** `crr status` lists a region's nodes when it is served by several (regions.X.nodes: several). */
import { describe, expect, it } from "vitest";
import type { RegionStatus } from "../node/index.js";
import { formatStatus } from "./status.js";

const base = {
  region: "us-east-1",
  incarnation: "a".repeat(32),
  ready: true,
  draining: false,
  wal: { durableLsn: 12, firstLsn: 1, segments: 1, bytes: 4096, fsyncs: 3 },
  store: { records: 20, conflicts: 0, digest: "f".repeat(64) },
  peers: [],
  watermarks: { "us-east-1": 12 },
} as unknown as RegionStatus;

describe("formatStatus", () => {
  it("shows each node of the region: its stream, last beat, whether it left, how far the store holds it", () => {
    const text = formatStatus({
      ...base,
      nodes: [
        {
          nodeId: "1".repeat(32),
          incarnation: "a".repeat(32),
          self: true,
          seenAgoMs: 200,
          left: false,
          storedLsn: 12,
        },
        {
          nodeId: "2".repeat(32),
          incarnation: "b".repeat(32),
          self: false,
          seenAgoMs: 31_000,
          left: true,
          storedLsn: 7,
        },
      ],
    });
    expect(text).toMatch(/node\s+incarnation\s+last beat\s+left\s+stored LSN/);
    expect(text).toMatch(/111111111111\s+aaaaaaaaaaaa…\s+this node\s+0\.2 s ago\s+no\s+12/);
    expect(text).toMatch(/222222222222\s+bbbbbbbbbbbb…\s+31\.0 s ago\s+LEFT\s+7/);
    expect(formatStatus(base)).not.toMatch(/stored LSN/);
  });
});
