/**
 * The data directory's id (`<dataDir>/node-id`), made once and kept: a region's nodes that
 * share a store tell their own streams (the incarnations this directory's WAL had) from a
 * fellow node's by it.
 */
import fs from "node:fs";
import path from "node:path";
import type { Runtime } from "../runtime/index.js";
import type { FileOps } from "../util/file-ops.js";
import { writeFileDurable } from "../util/durable-file.js";

export async function nodeIdOf(dataDir: string, runtime: Runtime, ops?: FileOps): Promise<string> {
  const file = path.join(dataDir, "node-id");
  if (fs.existsSync(file)) {
    const id = fs.readFileSync(file, "utf8").trim();
    if (!/^[0-9a-f]{32}$/.test(id))
      throw new Error(`${file}: not a node id (32 hex digits); restore it or remove it`);
    return id;
  }
  const id = runtime.randomBytes(16).toString("hex");
  await writeFileDurable(file, `${id}\n`, ops);
  return id;
}
