/**
 * The simulated WAN: requests between regions delivered in process (fastify's inject into
 * the target region's real routes), through a seeded schedule of delays, losses (of the
 * request or of its answer), duplicates, corrupted batches and partitions. Batches of one
 * link arrive in the order sent, like HTTP pipelining on one connection. A region served by
 * several nodes is one address: each request goes to one of its running nodes, picked at
 * random when it arrives (a load balancer).
 */
import type { FastifyInstance } from "fastify";
import { LinkError, type PeerRequest, type PeerResponse, type PeerTransport } from "../link/index.js";
import type { Scheduler, SimProcess } from "./scheduler.js";

export interface NetFaults {
  /** Probability that a request, or its answer, is lost. */
  loss: number;
  /** Probability that a batch is delivered twice. */
  duplicate: number;
  /** Probability that one bit of a batch flips on the way. */
  corrupt: number;
  delayMsMin: number;
  delayMsMax: number;
}

/** A running node, reachable at its region's address (registered while it serves). */
export interface Endpoint {
  region: string;
  proc: SimProcess;
  app: FastifyInstance | undefined;
}

export class Network {
  faults: NetFaults = { loss: 0, duplicate: 0, corrupt: 0, delayMsMin: 5, delayMsMax: 60 };
  /** Unordered region pairs that cannot reach each other, as "a|b" with a < b. */
  readonly cut = new Set<string>();
  /** Running nodes by node name. */
  readonly endpoints = new Map<string, Endpoint>();
  /** When the last batch of each link is delivered (keeps a link's batches in order). */
  private readonly batchClock = new Map<string, number>();
  delivered = 0;

  constructor(
    private readonly sched: Scheduler,
    private readonly requestTimeoutMs: number,
  ) {}

  partitioned(a: string, b: string): boolean {
    return this.cut.has(a < b ? `${a}|${b}` : `${b}|${a}`);
  }

  partition(a: string, b: string, on: boolean): void {
    const k = a < b ? `${a}|${b}` : `${b}|${a}`;
    if (on) this.cut.add(k);
    else this.cut.delete(k);
  }

  /** Requests of node `sender` (default: `from`, its region's name) of region `from` to region `to`. */
  transport(from: string, fromProc: SimProcess, to: string, sender = from): PeerTransport {
    return {
      request: (r) => this.send(from, fromProc, to, r, sender),
      close: async () => undefined,
    };
  }

  private delay(): number {
    return this.sched.int(this.faults.delayMsMin, this.faults.delayMsMax);
  }

  private send(
    from: string,
    fromProc: SimProcess,
    to: string,
    r: PeerRequest,
    sender: string,
  ): Promise<PeerResponse> {
    return new Promise((resolve, reject) => {
      const where = `${r.method} ${to}${r.path}`;
      const fail = (reason: string) => reject(new LinkError(reason, `${where}: ${reason} (simulated)`));
      let settled = false;
      const onAbort = () => {
        if (settled) return;
        settled = true;
        fail("timeout");
      };
      if (r.signal?.aborted) return onAbort();
      r.signal?.addEventListener("abort", onAbort, { once: true });
      // What undici's request timeout does over HTTP: no answer in time is a failure.
      this.sched.after(this.requestTimeoutMs, onAbort, fromProc);
      const done = (f: () => void) => {
        if (settled || !fromProc.alive) return; // a dead sender hears nothing
        settled = true;
        r.signal?.removeEventListener("abort", onAbort);
        f();
      };
      const f = this.faults;
      let at = this.delay();
      if (r.lane === "batch") {
        // One sending node's connection: two nodes of one region ship side by side.
        const key = `${sender}>${to}`;
        at = Math.max(this.sched.nowMs + at, this.batchClock.get(key) ?? 0) - this.sched.nowMs;
        this.batchClock.set(key, this.sched.nowMs + at);
      }
      const lostRequest = this.sched.chance(f.loss);
      const lostAnswer = this.sched.chance(f.loss);
      const copies = r.lane === "batch" && this.sched.chance(f.duplicate) ? 2 : 1;
      let body = r.body;
      if (r.lane === "batch" && Buffer.isBuffer(body) && body.length > 0 && this.sched.chance(f.corrupt)) {
        body = Buffer.from(body);
        const i = this.sched.int(0, body.length - 1);
        body[i] = body[i]! ^ (1 << this.sched.int(0, 7));
      }
      this.sched.after(
        at,
        () => {
          const target = this.pickNode(to);
          if (!fromProc.alive) return;
          if (this.partitioned(from, to) || !target?.app || !target.proc.alive || lostRequest) {
            // The sender learns nothing until its own timeout; a refused connection is quick.
            if (!target?.app)
              this.sched.after(this.delay(), () => done(() => fail("connection_refused")), fromProc);
            return;
          }
          for (let c = 0; c < copies; c++)
            this.deliver(target, r, body, (answer) => {
              if (c > 0) return;
              if (lostAnswer || this.partitioned(from, to)) return;
              this.sched.after(this.delay(), () => done(() => resolve(answer)), fromProc);
            });
        },
        fromProc,
      );
    });
  }

  /** A running node of `region`: its only one, or one picked at random among several. */
  private pickNode(region: string): Endpoint | undefined {
    const live = [...this.endpoints.values()].filter((e) => e.region === region && e.app && e.proc.alive);
    return live.length > 1 ? this.sched.pick(live) : live[0];
  }

  private deliver(
    target: Endpoint,
    r: PeerRequest,
    body: Buffer | string | undefined,
    answered: (a: PeerResponse) => void,
  ): void {
    this.delivered++;
    const pending = { proc: target.proc };
    this.sched.pending.add(pending);
    const app = target.app!;
    void app
      .inject({ method: r.method, url: r.path, headers: r.headers, payload: body })
      .then(
        (res) => {
          if (target.proc.alive)
            answered({
              status: res.statusCode,
              headers: res.headers as PeerResponse["headers"],
              text: res.body,
            });
        },
        () => undefined,
      )
      .finally(() => {
        this.sched.pending.delete(pending);
      });
  }
}
