/**
 * The one helper for durable file replacement: write a temp file, fsync it, rename it over
 * the target, fsync the directory. After a crash the target holds either the old or the new
 * content, never a mix (Litestream's dance).
 */
import path from "node:path";
import { type FileOps, nodeFileOps } from "./file-ops.js";

export async function fsyncDir(dir: string, ops: FileOps = nodeFileOps): Promise<void> {
  const fd = await ops.open(dir, "r");
  try {
    await ops.fsync(fd);
  } finally {
    await ops.close(fd);
  }
}

export async function writeAll(ops: FileOps, fd: number, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const n = await ops.write(fd, buf, done, buf.length - done, position + done);
    if (n <= 0) throw Object.assign(new Error("write made no progress"), { code: "EIO" });
    done += n;
  }
}

export async function writeFileDurable(
  target: string,
  data: Buffer | string,
  ops: FileOps = nodeFileOps,
): Promise<void> {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const tmp = `${target}.${process.pid}.tmp`;
  const fd = await ops.open(tmp, "w");
  try {
    await writeAll(ops, fd, bytes, 0);
    await ops.fsync(fd);
  } finally {
    await ops.close(fd);
  }
  await ops.rename(tmp, target);
  await fsyncDir(path.dirname(target), ops);
}
