/** Poll `check` until it returns a truthy value or the deadline passes (never sleep-then-assert). */
export async function waitUntil<T>(
  check: () => T | Promise<T>,
  what: string,
  deadlineMs = 30_000,
  intervalMs = 20,
): Promise<NonNullable<T>> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
