import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach } from "vitest";
import { waitUntil } from "../../src/launch/index.js";

const made: string[] = [];

/** A fresh temp directory, removed after the test. */
export function tempDir(prefix = "crr-"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
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
