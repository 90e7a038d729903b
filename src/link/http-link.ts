/**
 * A peer reached over HTTP: the engine's only HTTP client (undici). Every request is signed
 * (src/protocol) with this region's identity and carries its incarnation, so the peer knows
 * which stream of ours is alive. Batches go over their own connection, pipelined up to
 * `inflightBatchesMax`, so they arrive in the order sent; everything else shares a second
 * small pool, so a control call never waits behind a window of batches.
 */
import { Pool } from "undici";
import type { Dispatcher } from "undici";
import {
  headerIncarnation,
  headerNonce,
  headerRule,
  signRequest,
  verifyAnswer,
  type KeyRing,
  type Signer,
} from "../protocol/index.js";
import { realRuntime, type Runtime } from "../runtime/index.js";
import type { StoredRecord } from "../store/index.js";
import { codeBatch, namesCoding, type BatchCoding } from "./coding.js";
import { LinkError, classify } from "./errors.js";
import {
  fromWire,
  type BucketsAnswer,
  type ExportPage,
  type ExportQuery,
  type PeerLink,
  type ReplicateAnswer,
  type StreamPage,
  type StreamQuery,
  type WalAnswer,
  type WatermarksView,
  type Withheld,
  type WireVersion,
} from "./types.js";

export { headerIncarnation, headerRule };

export interface HttpPeerLinkOptions {
  /** This region (the signer). */
  region: string;
  /** This region's WAL incarnation, once known (undefined for operator tools). */
  incarnation?: () => string | undefined;
  /** This process's boot id (undefined for operator tools). */
  boot?: string;
  /** This region's conflict rule, sent with every batch so a mismatch is refused. */
  rule?: string;
  /** Signs as `region`. */
  signer: Signer;
  /** Verifies the peer's answers (signed back by the peer, bound to each request). */
  keys: KeyRing;
  peer: string;
  url: string;
  /** TLS material for https:// peers (the CA to verify them, the client certificate to present); read at each new connection pool. */
  tls?: () => ClientTls;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  inflightBatchesMax?: number;
  /** Clock and nonces (default: the real runtime). */
  runtime?: Runtime;
  /** What carries the requests (default: undici pools to `url`; the simulator passes its own). */
  transport?: PeerTransport;
  /**
   * Code batches of at least `bytesMin` bytes with `coding` once the peer names it in an
   * answer's Accept-Encoding (shipper.compression; coding.ts). Undefined: never.
   */
  compression?: { coding: BatchCoding; bytesMin: number };
  /** Each batch sent: its bytes, and the bytes on the wire under the coding used. */
  onBatchSent?: (bytes: number, wireBytes: number) => void;
}

/** What a TLS client presents and trusts; `version` changes when the files were reloaded. */
export interface ClientTls {
  version: number;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** One signed request as it leaves: batches on their own ordered lane, everything else on `call`. */
export interface PeerRequest {
  lane: "batch" | "call";
  method: "GET" | "POST";
  path: string;
  headers: Record<string, string>;
  body: Buffer | string | undefined;
  signal: AbortSignal | undefined;
}

export interface PeerResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * What carries requests to a peer and brings back its answer: undici over HTTP, or the
 * simulator's in-process delivery through a fault schedule. Rejects with a LinkError (a
 * stable transport `reason`) when no answer came; batches on the `batch` lane arrive in the
 * order sent.
 */
export interface PeerTransport {
  request(r: PeerRequest): Promise<PeerResponse>;
  close(): Promise<void>;
}

/** The HTTP transport: one pipelined connection for batches, a small pool for the rest. */
export function undiciTransport(o: HttpPeerLinkOptions): PeerTransport {
  const url = o.url.replace(/\/$/, "");
  const origin = new URL(url).origin;
  const pools = (tls: ClientTls | undefined) => {
    const common = {
      connectTimeout: o.connectTimeoutMs,
      headersTimeout: o.requestTimeoutMs,
      bodyTimeout: o.requestTimeoutMs,
      keepAliveTimeout: 4000,
      ...(tls ? { connect: { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: true } } : {}),
    };
    return {
      version: tls?.version ?? 0,
      batch: new Pool(origin, {
        ...common,
        connections: 1,
        pipelining: Math.max(1, o.inflightBatchesMax ?? 1),
      }),
      call: new Pool(origin, { ...common, connections: 2 }),
    };
  };
  const secure = origin.startsWith("https:");
  let current = pools(secure ? o.tls?.() : undefined);
  /** The pools for the current certificates: reloaded files get new connections, old ones finish what they carry. */
  const now = () => {
    const tls = secure ? o.tls?.() : undefined;
    if (tls && tls.version !== current.version) {
      const old = current;
      current = pools(tls);
      void Promise.all([old.batch.close(), old.call.close()]).catch(() => undefined);
    }
    return current;
  };
  return {
    async request(r) {
      let res: Dispatcher.ResponseData;
      const where = `${r.method} ${url}${r.path}`;
      const p = now();
      try {
        res = await (r.lane === "batch" ? p.batch : p.call).request({
          method: r.method,
          path: r.path,
          headers: r.headers,
          body: r.body,
          signal: r.signal,
          // Replaying a batch is harmless (the peer's watermark makes it a no-op), and undici
          // only pipelines requests marked so. It also waits for each answer's headers before
          // sending the next request unless told the answer comes quickly (`blocking`, true by
          // default): that made a window of several batches cost a round trip each.
          idempotent: r.lane === "batch",
          blocking: r.lane !== "batch",
        });
      } catch (err) {
        throw new LinkError(classify(err), `${where}: ${(err as Error).message}`, { cause: err });
      }
      try {
        return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
      } catch (err) {
        throw new LinkError(classify(err), `reading the answer of ${where}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    },
    async close() {
      await Promise.all([current.batch.close(), current.call.close()]).catch(() => undefined);
    },
  };
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** How long batches go plain after a coded one was refused as unreadable. */
const codingPauseMs = 60_000;

export class HttpPeerLink implements PeerLink {
  readonly peer: string;
  readonly url: string;
  private readonly o: HttpPeerLinkOptions;
  private readonly transport: PeerTransport;
  private readonly rt: Runtime;
  private bytesSent = 0;
  private bytesReceived = 0;
  /** Whether the peer's last answer to a batch named the coding we would send (coding.ts). */
  private peerReadsCoding = false;
  /**
   * Until when batches go plain after a coded one was refused as unreadable (415, or 400 from
   * a node of an older version behind the same address during a rolling upgrade): without it,
   * every answer of a newer node would turn coding on again, and each window would fail.
   */
  private codingPausedUntilMs = 0;

  constructor(o: HttpPeerLinkOptions) {
    this.o = o;
    this.peer = o.peer;
    this.url = o.url.replace(/\/$/, "");
    this.rt = o.runtime ?? realRuntime;
    this.transport = o.transport ?? undiciTransport(o);
  }

  private headers(method: string, path: string, body: Buffer | string): Record<string, string> {
    return signRequest({
      signer: this.o.signer,
      method,
      path,
      body,
      region: this.o.region,
      to: this.peer,
      nowMs: this.rt.nowMs(),
      nonce: this.rt.randomBytes(16).toString("hex"),
      incarnation: this.o.incarnation?.(),
      boot: this.o.boot,
      rule: this.o.rule,
    });
  }

  /** One signed request; resolves with the status and parsed JSON answer, rejects with a LinkError on transport failure. */
  private async send(
    lane: PeerRequest["lane"],
    method: "GET" | "POST",
    path: string,
    body: Buffer | string | undefined,
    contentType: string | undefined,
    signal: AbortSignal | undefined,
    contentCoding?: BatchCoding,
  ): Promise<{
    status: number;
    answer: Record<string, unknown> | undefined;
    text: string;
    headers: PeerResponse["headers"];
  }> {
    const payload = body ?? "";
    const headers = this.headers(method, path, payload);
    if (contentType) headers["content-type"] = contentType;
    if (contentCoding) headers["content-encoding"] = contentCoding;
    this.bytesSent +=
      (typeof payload === "string" ? Buffer.byteLength(payload) : payload.length) + path.length;
    const res = await this.transport.request({ lane, method, path, headers, body, signal });
    this.bytesReceived += Buffer.byteLength(res.text);
    const signed = verifyAnswer({
      keys: this.o.keys,
      status: res.status,
      headers: res.headers,
      body: res.text,
      from: this.peer,
      to: this.o.region,
      requestNonce: headers[headerNonce]!,
    });
    // Only a signed answer is acted upon; a refusal before authentication (401) is unsigned and
    // is reported as what it says, never trusted for anything but the failure.
    if (signed !== "ok" && (res.status < 400 || res.status === 409))
      throw new LinkError(
        "unauthenticated_answer",
        `${method} ${this.url}${path}: ${this.peer}'s answer (${res.status}) is not authentic: ${signed}; ignored`,
      );
    return { status: res.status, answer: parseJson(res.text), text: res.text, headers: res.headers };
  }

  private refused(
    method: string,
    path: string,
    r: { status: number; answer: Record<string, unknown> | undefined; text: string },
  ): LinkError {
    const code = typeof r.answer?.code === "string" ? r.answer.code : `http_${r.status}`;
    const detail = String(r.answer?.message ?? r.text).slice(0, 300);
    return new LinkError(
      code,
      `${method} ${this.url}${path}: ${this.peer} answered ${r.status} ${code}: ${detail}`,
      {
        status: r.status,
        answer: r.answer,
      },
    );
  }

  /** A signed JSON call that must answer 200 with a JSON object. */
  private async call<T>(
    method: "GET" | "POST",
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<T> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const r = await this.send(
      "call",
      method,
      path,
      text,
      text === undefined ? undefined : "application/json",
      signal,
    );
    if (r.status !== 200 || !r.answer) throw this.refused(method, path, r);
    return r.answer as T;
  }

  async replicate(body: Buffer, signal?: AbortSignal): Promise<ReplicateAnswer> {
    const path = "/v1/replicate";
    const c = this.o.compression;
    const coding =
      c && this.peerReadsCoding && body.length >= c.bytesMin && this.rt.nowMs() >= this.codingPausedUntilMs
        ? c.coding
        : undefined;
    const wire = coding ? codeBatch(body) : body;
    const r = await this.send("batch", "POST", path, wire, "application/octet-stream", signal, coding);
    this.o.onBatchSent?.(body.length, wire.length);
    // Every answer says again which codings the peer reads (it may have been replaced by a
    // node of another version); a 415 to a coded batch says it does not read it.
    if (c) this.peerReadsCoding = r.status !== 415 && namesCoding(r.headers["accept-encoding"], c.coding);
    if (coding && (r.status === 415 || r.status === 400))
      this.codingPausedUntilMs = this.rt.nowMs() + codingPauseMs;
    const watermark = r.answer?.watermark;
    if (r.status === 200 && typeof watermark === "number") return { kind: "ok", watermark };
    if (r.status === 409 && r.answer?.code === "watermark_gap" && typeof watermark === "number")
      return { kind: "gap", watermark };
    throw this.refused("POST", path, r);
  }

  async watermarks(signal?: AbortSignal): Promise<WatermarksView> {
    const v = await this.call<WatermarksView>("GET", "/v1/watermarks", undefined, signal);
    if (!Array.isArray(v.streams) || typeof v.incarnation !== "string")
      throw new LinkError("bad_answer", `GET ${this.url}/v1/watermarks: not a watermarks answer`);
    return { ...v, seen: Array.isArray(v.seen) ? v.seen : [] };
  }

  async health(signal?: AbortSignal): Promise<void> {
    const path = "/healthz";
    const r = await this.send("call", "GET", path, undefined, undefined, signal);
    if (r.status !== 200) throw this.refused("GET", path, r);
  }

  async tree(level: number, indexes: number[]): Promise<string[]> {
    return (await this.call<{ digests: string[] }>("POST", "/v1/divergence/tree", { level, indexes }))
      .digests;
  }

  async buckets(buckets: number[]): Promise<BucketsAnswer> {
    const a = await this.call<{
      versions: WireVersion[];
      withheldTenants?: string[];
      boot?: string;
      storeId?: string;
    }>("POST", "/v1/divergence/buckets", { buckets });
    return {
      versions: a.versions.map((v) => ({ ...fromWire(v), intact: v.intact ?? true })),
      withheldTenants: a.withheldTenants ?? [],
      ...(typeof a.boot === "string" ? { boot: a.boot } : {}),
      ...(typeof a.storeId === "string" ? { storeId: a.storeId } : {}),
    };
  }

  async walRecords(lsns: number[]): Promise<WalAnswer> {
    const a = await this.call<{ incarnation: string; records: WireVersion[]; withheld?: Withheld[] }>(
      "POST",
      "/v1/divergence/wal",
      { lsns },
    );
    return { incarnation: a.incarnation, records: a.records.map(fromWire), withheld: a.withheld ?? [] };
  }

  async exportPage(q: ExportQuery): Promise<ExportPage> {
    const a = await this.call<{
      versions: WireVersion[];
      withheldTenants?: string[];
      next?: { bucket: number; key: string };
    }>("POST", "/v1/divergence/export", q);
    return { versions: a.versions.map(fromWire), withheldTenants: a.withheldTenants ?? [], next: a.next };
  }

  async streamRecords(q: StreamQuery): Promise<StreamPage> {
    const a = await this.call<{ versions: WireVersion[]; withheld?: Withheld[]; next?: number }>(
      "POST",
      "/v1/divergence/stream",
      q,
    );
    return {
      versions: a.versions.map((v) => ({ ...fromWire(v), intact: v.intact ?? true })),
      withheld: a.withheld ?? [],
      next: a.next,
    };
  }

  async repair(versions: StoredRecord[]): Promise<{ changed: string[] }> {
    return this.call<{ changed: string[] }>("POST", "/v1/divergence/repair", { versions });
  }

  bytes(): number {
    return this.bytesSent + this.bytesReceived;
  }

  async close(): Promise<void> {
    await this.transport.close();
  }
}
