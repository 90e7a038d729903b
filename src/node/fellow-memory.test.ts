/**
 * What a node remembers of its region against what a lost or restored shared store lists:
 * what the store forgot, and which fellows must replay their WAL into it before this node
 * admits appends.
 */
import { describe, expect, it } from "vitest";
import type { RegionNode } from "../store/index.js";
import { awaitedFellows, forgottenBy, memoryOf, parseMemory, type FellowMemory } from "./fellow-memory.js";

const row = (
  nodeId: string,
  incarnation: string,
  boot: string,
  more: Partial<RegionNode> = {},
): RegionNode => ({
  nodeId,
  incarnation,
  boot,
  seenAtMs: 0,
  seenAgoMs: 0,
  leftAtMs: undefined,
  replayedAtMs: undefined,
  ...more,
});

const memory: FellowMemory = {
  region: "r1",
  atMs: 1000,
  nodes: [
    { nodeId: "a", incarnation: "ia", boot: "a1", storedLsn: 12 },
    { nodeId: "b", incarnation: "ib", boot: "b1", storedLsn: 7 },
  ],
};

describe("a node's memory of its region", () => {
  it("is the store's live nodes with how far it holds each stream and when each replayed", () => {
    const rows = [
      row("a", "ia", "a1", { replayedAtMs: 900 }),
      row("b", "ib", "b1"),
      row("c", "ic", "c1", { leftAtMs: 5 }),
    ];
    expect(memoryOf("r1", rows, new Map([["ia", 12]]), 1000)).toStrictEqual({
      region: "r1",
      atMs: 1000,
      nodes: [
        { nodeId: "a", incarnation: "ia", boot: "a1", storedLsn: 12, replayedAtMs: 900 },
        { nodeId: "b", incarnation: "ib", boot: "b1", storedLsn: 0 },
      ],
    });
  });

  it("finds nothing forgotten in a store that holds every node and at least every stream it remembers", () => {
    const rows = [row("a", "ia", "a2"), row("b", "ib", "b1"), row("c", "ic", "c1")];
    expect(
      forgottenBy(
        memory,
        rows,
        new Map([
          ["ia", 12],
          ["ib", 9],
        ]),
      ),
    ).toEqual([]);
  });

  it("finds a node the store no longer lists, and a stream it holds less of", () => {
    expect(forgottenBy(memory, [], new Map())).toEqual([
      "node a (incarnation ia) is not in the store",
      "node b (incarnation ib) is not in the store",
    ]);
    const restored = [row("a", "ia", "a1"), row("b", "ib", "b1")];
    expect(
      forgottenBy(
        memory,
        restored,
        new Map([
          ["ia", 11],
          ["ib", 7],
        ]),
      ),
    ).toEqual(["the store holds incarnation ia's stream to LSN 11; it held it to 12"]);
  });

  it("does not count a node marked left as forgotten", () => {
    const rows = [row("a", "ia", "a1"), row("b", "left-b", "", { leftAtMs: 1 })];
    expect(forgottenBy(memory, rows, new Map([["ia", 12]]))).toEqual([]);
  });

  it("waits for each fellow until a row of it shows a replay later than the memory", () => {
    const b = memory.nodes[1]!;
    expect(awaitedFellows(memory, [], "a")).toEqual([b]);
    // Joined, not replayed yet; or a row a backup brought back, replayed before the memory was
    // written (at a boot the memory never saw: found by review).
    expect(awaitedFellows(memory, [row("b", "ib", "b2")], "a")).toEqual([b]);
    expect(awaitedFellows(memory, [row("b", "ib", "b0", { replayedAtMs: 999 })], "a")).toEqual([b]);
    expect(awaitedFellows(memory, [row("b", "ib", "b1", { replayedAtMs: 1000 })], "a")).toEqual([b]);
    // Replayed after it, under its incarnation or a new one, or declared gone: no longer.
    expect(awaitedFellows(memory, [row("b", "ib", "b2", { replayedAtMs: 1001 })], "a")).toEqual([]);
    expect(awaitedFellows(memory, [row("b", "ib2", "b3", { replayedAtMs: 5000 })], "a")).toEqual([]);
    expect(awaitedFellows(memory, [row("b", "left-b", "", { leftAtMs: 1 })], "a")).toEqual([]);
    // Never itself, and a node with two remembered incarnations once.
    const two = { ...memory, nodes: [...memory.nodes, { ...b, incarnation: "ib0", boot: "b0" }] };
    expect(awaitedFellows(two, [row("b", "ib0", "b1", { replayedAtMs: 2000 })], "b")).toEqual([
      memory.nodes[0],
    ]);
    expect(awaitedFellows(two, [], "a")).toEqual([b]);
  });

  it("reads only a well-formed file, saying what is wrong", () => {
    expect(parseMemory(JSON.stringify(memory))).toEqual(memory);
    expect(parseMemory("{")).toMatch(/^not JSON/);
    const waiting = { ...memory, forgotten: ["node b (incarnation ib) is not in the store"] };
    expect(parseMemory(JSON.stringify(waiting))).toEqual(waiting);
    expect(parseMemory("[]")).toBe("expected {region, atMs, nodes: [...]}");
    expect(parseMemory(JSON.stringify({ region: "r1", nodes: [] }))).toBe(
      "expected {region, atMs, nodes: [...]}",
    );
    expect(parseMemory(JSON.stringify({ ...memory, forgotten: "x" }))).toBe(
      "forgotten: expected an array of strings",
    );
    expect(parseMemory(JSON.stringify({ region: "r1", atMs: 1, nodes: [{ nodeId: "a" }] }))).toBe(
      "nodes[0]: expected {nodeId, incarnation, boot, storedLsn}",
    );
    const bad = { ...memory, nodes: [{ ...memory.nodes[0], storedLsn: -1 }] };
    expect(parseMemory(JSON.stringify(bad))).toMatch(/^nodes\[0\]/);
    const badTime = { ...memory, nodes: [{ ...memory.nodes[0], replayedAtMs: "soon" }] };
    expect(parseMemory(JSON.stringify(badTime))).toMatch(/^nodes\[0\]/);
    // Each field on its own.
    expect(parseMemory("null")).toBe("expected {region, atMs, nodes: [...]}");
    expect(parseMemory(JSON.stringify({ ...memory, region: 1 }))).toBe(
      "expected {region, atMs, nodes: [...]}",
    );
    expect(parseMemory(JSON.stringify({ ...memory, forgotten: ["a", 1] }))).toBe(
      "forgotten: expected an array of strings",
    );
    for (const field of ["nodeId", "incarnation", "boot", "storedLsn"]) {
      const node: Record<string, unknown> = { ...memory.nodes[1] };
      delete node[field];
      const one = { ...memory, nodes: [memory.nodes[0], node] };
      expect(parseMemory(JSON.stringify(one)), field).toBe(
        "nodes[1]: expected {nodeId, incarnation, boot, storedLsn}",
      );
    }
    expect(parseMemory(JSON.stringify({ ...memory, nodes: [null] }))).toMatch(/^nodes\[0\]/);
  });
});
