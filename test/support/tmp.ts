import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach } from "vitest";
import { waitUntil } from "../../src/launch/index.js";

const made: string[] = [];

const madeForFile: string[] = [];
process.on("exit", () => {
  for (const dir of madeForFile) fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * A fresh temp directory, removed after the test, or (`forFile`: a cluster shared by the tests
 * of a file, which writes there after the first test ended) when the test file's process exits.
 */
export function tempDir(prefix = "crr-", forFile = false): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  (forFile ? madeForFile : made).push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** Poll `check` until it returns a truthy value or the deadline passes (no sleep-then-assert). */
export function waitFor<T>(
  check: () => T | Promise<T>,
  what: string,
  deadlineMs = 30_000,
): Promise<NonNullable<T>> {
  return waitUntil(check, what, deadlineMs);
}
