/**
 * The simulated disk keeps each node to its own files: a power loss of one data directory
 * leaves a sibling whose name extends it alone (`r0` and `r0-b`, several nodes of one
 * region), a dead process's work in flight touches nothing, and a descriptor used after its
 * close is a failure of the run (found with several nodes per region: a crash of `r0` closed
 * `r0-b`'s WAL descriptor, and a WAL read closed the writer's).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { SimDisk } from "./disk.js";
import { Scheduler, type SimProcess } from "./scheduler.js";

function setup() {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "crr-simdisk-"));
  const disk = new SimDisk(new Scheduler(1));
  const a = path.join(base, "r0");
  const b = path.join(base, "r0-b");
  for (const d of [a, b]) fs.mkdirSync(d);
  return { base, disk, a, b };
}

const write = (disk: SimDisk, fd: number, text: string) =>
  disk.write(fd, Buffer.from(text), 0, text.length, 0);

describe("SimDisk", () => {
  it("a power loss of one directory leaves a sibling with a longer name alone", async () => {
    const { base, disk, a, b } = setup();
    const fa = await disk.open(path.join(a, "f"), "w");
    const fb = await disk.open(path.join(b, "f"), "w");
    await write(disk, fb, "synced");
    await disk.fdatasync(fb);
    await write(disk, fa, "unsynced");
    disk.crash(a, { torn: false });
    expect(fs.existsSync(path.join(a, "f"))).toBe(false);
    // r0-b's descriptor still works and its file is untouched.
    await write(disk, fb, "synced+");
    await disk.close(fb);
    expect(fs.readFileSync(path.join(b, "f"), "utf8")).toBe("synced+");
    disk.full.add(a);
    await expect(write(disk, await disk.open(path.join(b, "g"), "w"), "x")).resolves.toBe(1);
    expect(disk.misuse).toEqual([]);
    fs.rmSync(base, { recursive: true, force: true });
  });

  it("fails a dead process's operations before they touch anything, and reports a descriptor used after its close", async () => {
    const { base, disk, a } = setup();
    const proc: SimProcess = { alive: true, skewMs: 0 };
    const ops = disk.view(proc);
    const fd = await ops.open(path.join(a, "f"), "w");
    proc.alive = false;
    await expect(ops.write(fd, Buffer.from("x"), 0, 1, 0)).rejects.toMatchObject({ code: "EIO" });
    expect(fs.readFileSync(path.join(a, "f"), "utf8")).toBe("");
    expect(disk.misuse).toEqual([]);
    await disk.close(fd);
    await disk.close(fd).catch(() => undefined);
    await disk.read(fd, Buffer.alloc(1), 0, 1, 0).catch(() => undefined);
    expect(disk.misuse).toHaveLength(2);
    expect(disk.misuse[0]).toMatch(/^close of fd \d+, which is not open/);
    expect(disk.misuse[1]).toMatch(/^use of fd \d+, which is not open/);
    fs.rmSync(base, { recursive: true, force: true });
  });
});
