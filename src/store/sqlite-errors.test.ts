/**
 * How SQLite's failures reach the node: a full disk and damage get their own types (503 until
 * there is room; stop and rebuild), any other SQLite failure names the file and the operation,
 * and what is not SQLite's passes through unchanged.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { StoreCorruptError, StoreError, StoreFullError } from "../errors.js";
import { tempDir } from "../../test/support/tmp.js";
import { SqliteStore, storeError } from "./sqlite-store.js";

const coded = (code: string, message = "it failed") => Object.assign(new Error(message), { code });
const file = "/data/store.sqlite";

describe("storeError", () => {
  it("a full disk is a StoreFullError naming the file and the operation", () => {
    const err = storeError(file, "apply", coded("SQLITE_FULL", "database or disk is full"));
    expect(err).toBeInstanceOf(StoreFullError);
    expect(err).toMatchObject({ code: "store_full", file, op: "apply" });
    expect(err.message).toBe(`store ${file}: apply failed: database or disk is full`);
  });

  it.each(["SQLITE_CORRUPT", "SQLITE_CORRUPT_INDEX", "SQLITE_NOTADB"])(
    "%s is damage: a StoreCorruptError that says to rebuild",
    (code) => {
      const err = storeError(file, "read a key", coded(code));
      expect(err).toBeInstanceOf(StoreCorruptError);
      expect(err).toMatchObject({ code: "store_corrupt", op: "read a key" });
      expect(err.message).toContain("crr rebuild");
    },
  );

  it("another SQLite failure is a StoreError naming the file and the operation", () => {
    const err = storeError(file, "scrub", coded("SQLITE_BUSY", "database is locked"));
    expect(err.constructor).toBe(StoreError);
    expect(err).toMatchObject({ code: "store_failed", file, op: "scrub" });
    expect(err.message).toBe(`store ${file}: scrub failed: database is locked`);
  });

  it("a StoreError passes unchanged; what is not SQLite's too; a thrown non-error becomes one", () => {
    const own = new StoreFullError(file, "apply", coded("SQLITE_FULL"));
    expect(storeError(file, "other", own)).toBe(own);
    const plain = coded("ENOENT");
    expect(storeError(file, "open", plain)).toBe(plain);
    const untyped = new Error("no code at all");
    expect(storeError(file, "open", untyped)).toBe(untyped);
    const text = storeError(file, "open", "a string was thrown");
    expect(text).toBeInstanceOf(Error);
    expect(text.constructor).toBe(Error);
    expect(text.message).toBe("a string was thrown");
    expect(storeError(file, "open", undefined).message).toBe("undefined");
  });

  it("a file that is not a database is refused at open as damage, naming it", () => {
    const bad = path.join(tempDir(), "store.sqlite");
    fs.writeFileSync(bad, Buffer.alloc(8192, 0x5a));
    let err: unknown;
    try {
      new SqliteStore({ path: bad, rule: { kind: "first-write-wins" }, checkpointer: false });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StoreCorruptError);
    expect(err).toMatchObject({ file: bad, op: "open" });
  });
});
