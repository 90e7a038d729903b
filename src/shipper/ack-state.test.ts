/**
 * The shipper's state file per peer: read back as written; absent, another peer's, cut or
 * edited into nonsense reads as "no state" (the peer is asked anyway); a file that cannot be
 * read for another reason is an error, not "no state".
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "../../test/support/tmp.js";
import { readAckState, writeAckState } from "./ack-state.js";

const incarnation = "c".repeat(32);

describe("the shipper's state file", () => {
  it("reads back what was written, one JSON line", async () => {
    const file = path.join(tempDir(), "eu-west-1.json");
    const state = { peer: "eu-west-1", incarnation, acked: 42, tenants: ["a", "b"] };
    await writeAckState(file, state);
    expect(fs.readFileSync(file, "utf8")).toBe(`${JSON.stringify(state)}\n`);
    expect(readAckState(file, "eu-west-1")).toEqual(state);
  });

  it("no file, another peer's, or a file edited into nonsense is no state", async () => {
    const dir = tempDir();
    const file = path.join(dir, "eu-west-1.json");
    expect(readAckState(file, "eu-west-1")).toBeUndefined();
    await writeAckState(file, { peer: "ap-south-1", incarnation, acked: 1 });
    expect(readAckState(file, "eu-west-1")).toBeUndefined();
    for (const text of [
      "{not json",
      JSON.stringify({ peer: "eu-west-1", incarnation, acked: "42" }),
      JSON.stringify({ peer: "eu-west-1", incarnation: 7, acked: 42 }),
      JSON.stringify({ peer: "eu-west-1", acked: 42 }),
    ]) {
      fs.writeFileSync(file, text);
      expect(readAckState(file, "eu-west-1"), text).toBeUndefined();
    }
    fs.writeFileSync(file, JSON.stringify({ peer: "eu-west-1", incarnation, acked: 0 }));
    expect(readAckState(file, "eu-west-1")).toEqual({ peer: "eu-west-1", incarnation, acked: 0 });
  });

  it("a state file that cannot be read (not missing) is an error", () => {
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, "eu-west-1.json"));
    expect(() => readAckState(path.join(dir, "eu-west-1.json"), "eu-west-1")).toThrow(/EISDIR/);
  });
});
