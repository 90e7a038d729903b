/** Small HTTP helpers for the operator commands (they talk to a running node). */
import { request } from "undici";

export class NodeUnreachableError extends Error {}

export async function callNode<T>(
  url: string,
  path: string,
  method: "GET" | "POST" = "GET",
  timeoutMs = 5000,
): Promise<T> {
  const target = new URL(path, url.endsWith("/") ? url : `${url}/`).toString();
  let res;
  try {
    res = await request(target, { method, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    throw new NodeUnreachableError(`cannot reach ${target}: ${e.code ?? e.cause?.code ?? e.message}`);
  }
  const text = await res.body.text();
  if (res.statusCode >= 400)
    throw new NodeUnreachableError(`${method} ${target} answered ${res.statusCode}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}
