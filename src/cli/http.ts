/** Small HTTP helpers for the operator commands (they talk to a running node). */
import fs from "node:fs";
import path from "node:path";
import { request } from "undici";
import type { NodeConfig } from "../config/index.js";

/**
 * Where this config's node serves: what its running process wrote to `node.json` (it may have
 * bound port 0), else the configured listen address.
 */
export function nodeUrl(config: NodeConfig): string {
  try {
    const info = JSON.parse(fs.readFileSync(path.join(config.dataDir, "node.json"), "utf8")) as {
      url?: string;
      pid?: number;
    };
    if (typeof info.url === "string" && typeof info.pid === "number" && alive(info.pid)) return info.url;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT" && !(err instanceof SyntaxError)) throw err;
  }
  return `http://${config.listen.host}:${config.listen.port}`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false; // ESRCH: no such process
  }
}

export class NodeUnreachableError extends Error {}

export async function callNode<T>(
  url: string,
  path: string,
  method: "GET" | "POST" = "GET",
  timeoutMs = 5000,
  body?: unknown,
): Promise<T> {
  const target = new URL(path, url.endsWith("/") ? url : `${url}/`).toString();
  let res;
  try {
    res = await request(target, {
      method,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    throw new NodeUnreachableError(`cannot reach ${target}: ${e.code ?? e.cause?.code ?? e.message}`);
  }
  const text = await res.body.text();
  if (res.statusCode >= 400)
    throw new NodeUnreachableError(`${method} ${target} answered ${res.statusCode}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}
