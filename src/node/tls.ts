/**
 * The node's TLS material (`listen.tls`): its certificate and key, served by its HTTPS
 * listener and presented as the client certificate to peers, and the CA both sides verify
 * against. The files are checked every `checkIntervalMs` (cert-manager and Kubernetes
 * secrets replace them in place): a change is loaded for new connections of the listener
 * and of every peer link; a file that does not load (half-written, wrong pair) keeps the
 * previous material in use and is logged, and counted, until it loads.
 */
import fs from "node:fs";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import type { TlsConfig } from "../config/index.js";
import type { ClientTls } from "../link/index.js";
import type { Logger } from "../log.js";
import type { Runtime, Timer } from "../runtime/index.js";

export class TlsFiles {
  private material: ClientTls & { cert: Buffer; key: Buffer };
  private stamp: string;
  private timer: Timer | undefined;
  private readonly listeners: Array<(m: SecureContextOptions) => void> = [];
  /** Reloads that failed since the last good one (a gauge). */
  failures = 0;

  constructor(
    private readonly c: TlsConfig,
    private readonly log: Logger,
  ) {
    this.stamp = this.stampNow();
    this.material = this.load(1);
  }

  /** What the HTTPS listener is built with. */
  serverOptions(): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean } {
    return {
      ...this.contextOptions(),
      requestCert: this.c.requireClientCert,
      rejectUnauthorized: this.c.requireClientCert,
    };
  }

  /** What peer links present and trust now. */
  client = (): ClientTls => this.material;

  /** Called with the new context options after each successful reload (the listener's setSecureContext). */
  onReload(fn: (m: SecureContextOptions) => void): void {
    this.listeners.push(fn);
  }

  watch(runtime: Runtime, checkIntervalMs: number): void {
    this.timer = runtime.every(checkIntervalMs, () => this.check());
  }

  stop(): void {
    this.timer?.cancel();
  }

  /** Reload when any file changed (size, mtime or inode). */
  check(): void {
    const stamp = this.stampNow();
    if (stamp === this.stamp) return;
    try {
      const next = this.load(this.material.version + 1);
      createSecureContext(this.contextOptionsOf(next)); // a mismatched pair throws here, not in a handshake
      this.material = next;
      this.stamp = stamp;
      this.failures = 0;
      for (const fn of this.listeners) fn(this.contextOptions());
      this.log.info({ certFile: this.c.certFile, version: next.version }, "TLS certificate reloaded");
    } catch (err) {
      if (++this.failures > 1) return; // logged once until it loads
      this.log.error(
        { err: (err as Error).message, certFile: this.c.certFile },
        "TLS files changed but do not load; the previous certificate stays in use",
      );
    }
  }

  private contextOptions(): SecureContextOptions {
    return this.contextOptionsOf(this.material);
  }

  private contextOptionsOf(m: ClientTls & { cert: Buffer; key: Buffer }): SecureContextOptions {
    return { cert: m.cert, key: m.key, ...(m.ca ? { ca: m.ca } : {}) };
  }

  private load(version: number): ClientTls & { cert: Buffer; key: Buffer } {
    return {
      version,
      cert: fs.readFileSync(this.c.certFile),
      key: fs.readFileSync(this.c.keyFile),
      ...(this.c.caFile ? { ca: fs.readFileSync(this.c.caFile) } : {}),
    };
  }

  private stampNow(): string {
    return [this.c.certFile, this.c.keyFile, this.c.caFile ?? ""]
      .map((f) => {
        if (!f) return "";
        try {
          const st = fs.statSync(f);
          return `${st.ino}:${st.size}:${st.mtimeMs}`;
        } catch {
          return "missing";
        }
      })
      .join("|");
  }
}
