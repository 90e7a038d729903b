/**
 * Signed JSON requests to a peer's divergence routes (and /v1/watermarks), counting the
 * bytes that cross the wire so a scan can report what it cost.
 */
import { request } from "undici";
import { signRequest } from "../protocol/index.js";

export class PeerRequestError extends Error {}

export class PeerClient {
  bytesSent = 0;
  bytesReceived = 0;

  constructor(
    private readonly region: string,
    private readonly secret: string,
    private readonly timeoutMs: number,
  ) {}

  async call<T>(baseUrl: string, method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
    const text = body === undefined ? "" : JSON.stringify(body);
    const headers: Record<string, string> = {
      ...signRequest({
        secret: this.secret,
        method,
        path,
        body: text,
        region: this.region,
        nowMs: Date.now(),
      }),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    };
    this.bytesSent += Buffer.byteLength(text) + path.length;
    let res;
    try {
      res = await request(`${baseUrl}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : text,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
    } catch (err) {
      throw new PeerRequestError(`${method} ${baseUrl}${path}: ${(err as Error).message}`, { cause: err });
    }
    const answer = await res.body.text();
    this.bytesReceived += Buffer.byteLength(answer);
    if (res.statusCode !== 200)
      throw new PeerRequestError(
        `${method} ${baseUrl}${path} answered ${res.statusCode}: ${answer.slice(0, 300)}`,
      );
    return JSON.parse(answer) as T;
  }
}
