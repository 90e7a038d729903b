import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach } from "vitest";

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
export async function waitFor<T>(
  check: () => T | Promise<T>,
  what: string,
  deadlineMs = 30_000,
): Promise<NonNullable<T>> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
