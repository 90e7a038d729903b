/**
 * Issue "Trust between regions", item 4, against real `crr serve` processes: HTTPS natively,
 * peers verified by mutual TLS against the CA (certificates made here with openssl), the
 * admin routes closed to an unsigned request even through a local TCP forwarder (every
 * caller is loopback there), and a certificate replaced on disk is served to new
 * connections without a restart, while replication goes on.
 */
import fs from "node:fs";
import path from "node:path";
import tls from "node:tls";
import { request, Agent } from "undici";
import { describe, expect, it } from "vitest";
import { runCrr } from "../support/cli.js";
import { Cluster, testProxy } from "../support/cluster.js";
import { keyConfig, makeCa, makeCert, regionKeys, serialOf } from "../support/pki.js";
import { tempDir, waitFor } from "../support/tmp.js";

const names = ["us-east-1", "us-west-2"];

/** The serial of the certificate a TLS server at `port` presents to a new connection. */
function servedSerial(port: number, o: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ...o, servername: "localhost" }, () => {
      const serial = s.getPeerCertificate().serialNumber.toUpperCase();
      s.end();
      resolve(serial);
    });
    s.on("error", reject);
  });
}

describe("TLS between regions", () => {
  it("serves HTTPS, requires peers' client certificates, keeps admin closed behind a forwarder, and reloads a rotated certificate", async () => {
    const dir = tempDir("crr-tls-");
    const ca = makeCa(path.join(dir, "ca"));
    const certs = Object.fromEntries(names.map((n) => [n, makeCert(ca, path.join(dir, n), n)]));
    const client = makeCert(ca, path.join(dir, "operator"), "operator");
    const keys = regionKeys(path.join(dir, "keys"), names);
    const trust = {
      ca: fs.readFileSync(ca.certFile),
      cert: fs.readFileSync(client.certFile),
      key: fs.readFileSync(client.keyFile),
    };
    const cluster = await Cluster.start({
      tls: trust,
      regions: names.map((name) => ({
        name,
        config: {
          ...keyConfig(keys, name),
          listen: {
            host: "127.0.0.1",
            port: 0,
            tls: { ...certs[name], caFile: ca.certFile, requireClientCert: true },
          },
        },
      })),
    });
    const [east, west] = [cluster.node("us-east-1"), cluster.node("us-west-2")];
    expect(east.url).toMatch(/^https:\/\//);
    const agent = cluster.dispatcher()!;
    const call = async (
      url: string,
      init: { method?: "GET" | "POST"; body?: string; dispatcher?: Agent } = {},
    ) => {
      const r = await request(url, {
        method: init.method ?? "GET",
        dispatcher: init.dispatcher ?? agent,
        ...(init.body ? { body: init.body, headers: { "content-type": "application/json" } } : {}),
      });
      const text = await r.body.text();
      return { status: r.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
    };
    const appendAt = (url: string, key: string) =>
      call(`${url}/v1/records`, {
        method: "POST",
        body: JSON.stringify({ key, tenant: "t", outcome: "accepted" }),
      });
    const arrives = (key: string) =>
      waitFor(
        async () => ((await call(`${west.url}/v1/records/${key}`)).status === 200 ? true : undefined),
        `${key} to replicate over TLS`,
      );

    expect((await appendAt(east.url, "k-tls")).status).toBe(200);
    await arrives("k-tls");

    // The operator's commands take the CA and their client certificate from the environment.
    const st = await runCrr(["status", "--url", east.url, "--json"], {
      env: {
        CRR_CA_FILE: ca.certFile,
        CRR_CLIENT_CERT_FILE: client.certFile,
        CRR_CLIENT_KEY_FILE: client.keyFile,
      },
    });
    expect(st.code, st.stderr).toBe(0);
    expect(JSON.parse(st.stdout)).toMatchObject({ region: "us-east-1" });

    // Without a client certificate the handshake is refused; plain HTTP gets nothing useful.
    const noCert = new Agent({ connect: { ca: trust.ca } });
    await expect(call(`${east.url}/healthz`, { dispatcher: noCert })).rejects.toThrow();
    await noCert.close();
    const plain = await fetch(east.url.replace("https:", "http:") + "/healthz").then(
      (r) => r.status,
      () => "refused",
    );
    expect(plain).not.toBe(200);

    // A TCP forwarder on the node's host: every caller is loopback there, and still not an admin.
    const forwarder = await testProxy({ targetPort: east.listenPort! });
    const viaForwarder = forwarder.url.replace("http:", "https:");
    expect((await call(`${viaForwarder}/v1/admin/undrain`, { method: "POST" })).status).toBe(401);
    expect((await call(`${viaForwarder}/healthz`)).status).toBe(200);

    // cert-manager rotates east's certificate: new connections get the new one, no restart.
    const old = serialOf(certs["us-east-1"]!.certFile);
    expect(await servedSerial(east.listenPort!, trust)).toBe(old);
    makeCert(ca, path.join(dir, "us-east-1"), "us-east-1");
    const rotated = serialOf(certs["us-east-1"]!.certFile);
    expect(rotated).not.toBe(old);
    await waitFor(
      async () => ((await servedSerial(east.listenPort!, trust)) === rotated ? true : undefined),
      "east to serve its rotated certificate",
    );
    // (the child's log reaches us through a pipe, possibly after the new certificate did)
    await waitFor(
      () => cluster.logs("us-east-1").includes("TLS certificate reloaded") || undefined,
      "east to log the reload",
    );
    expect((await appendAt(east.url, "k-after-rotation")).status).toBe(200);
    await arrives("k-after-rotation");
  });
});
