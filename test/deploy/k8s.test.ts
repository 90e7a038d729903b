/**
 * deploy/k8s: every overlay renders with `kubectl kustomize`, every rendered object validates
 * against the Kubernetes schemas (kubernetes-models), and what the StatefulSet says agrees
 * with the crr config the overlay ships: ports, probe paths and scheme, the config file's
 * path, every file the config names under a mount of the right kind (private material from
 * Secrets only), the data directory on the volume claim, the preStop drain's URL and
 * credential, and a termination grace period that covers the drain and the shutdown. The
 * config itself is loaded by crr (its files made for the test under a temporary root).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { ConfigMap, Service } from "kubernetes-models/v1";
import { StatefulSet } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import { credentialsOf, parseConfig, type NodeConfig } from "../../src/config/index.js";
import { repoRoot } from "../support/cli.js";
import { makeCa, makeCert, regionKeys } from "../support/pki.js";
import { tempDir } from "../support/tmp.js";

/** Rendered objects are walked loosely: the schemas above check their shapes. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;
type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
} & Record<string, Loose>;

const models: Record<string, new (o: never) => { validate(): void }> = {
  "v1/Service": Service as never,
  "v1/ConfigMap": ConfigMap as never,
  "apps/v1/StatefulSet": StatefulSet as never,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget as never,
};

const overlaysDir = path.join(repoRoot, "deploy/k8s/overlays");
const overlays = fs
  .readdirSync(overlaysDir)
  .flatMap((shape) => fs.readdirSync(path.join(overlaysDir, shape)).map((region) => ({ shape, region })));

function render(dir: string): K8sObject[] {
  const text = execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8" });
  return YAML.parseAllDocuments(text).map((d) => d.toJS() as K8sObject);
}

/** The config as crr loads it, its /etc/crr files made under a temporary root for `region`. */
function loadShipped(text: string, region: string, regions: string[]): NodeConfig {
  const root = tempDir();
  const raw = YAML.parse(text.replaceAll("/etc/crr/", `${root}/etc/crr/`)) as Record<string, unknown>;
  const keys = regionKeys(path.join(root, "etc/crr/pub"), regions);
  fs.mkdirSync(path.join(root, "etc/crr/keys"), { recursive: true });
  fs.copyFileSync(keys[region]!.privateKeyFile, path.join(root, "etc/crr/keys/region.key"));
  fs.mkdirSync(path.join(root, "etc/crr/admin"), { recursive: true });
  fs.writeFileSync(path.join(root, "etc/crr/admin/token"), "a-long-enough-admin-token-0123456789");
  const tls = path.join(root, "etc/crr/tls");
  const ca = makeCa(path.join(root, "ca"));
  const cert = makeCert(ca, tls, "node");
  fs.renameSync(cert.certFile, path.join(tls, "tls.crt"));
  fs.renameSync(cert.keyFile, path.join(tls, "tls.key"));
  fs.copyFileSync(ca.certFile, path.join(tls, "ca.crt"));
  const config = parseConfig(raw, `${region}/crr.yaml`, root, {});
  credentialsOf(config); // the private key's public half must be among its own publicKeyFiles
  return config;
}

function under(file: string, mounts: Array<{ name: string; mountPath: string }>) {
  return mounts.find((m) => file === m.mountPath || file.startsWith(`${m.mountPath}/`));
}

describe("deploy/k8s", () => {
  it("has the three deployment shapes", () => {
    expect([...new Set(overlays.map((o) => o.shape))].sort()).toEqual([
      "multi-way",
      "selective",
      "two-region",
    ]);
  });

  it.each(overlays)(
    "$shape/$region renders, validates against the Kubernetes schemas, and agrees with its config",
    ({ shape, region }) => {
      const objects = render(path.join(overlaysDir, shape, region));
      for (const o of objects) {
        const Model = models[`${o.apiVersion}/${o.kind}`];
        expect(Model, `no schema for ${o.apiVersion} ${o.kind}`).toBeDefined();
        expect(() => new Model!(o as never).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
      }
      const configMap = objects.find(
        (o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("crr-config"),
      )!;
      const text = configMap.data["crr.yaml"] as string;
      const shipped = YAML.parse(text) as {
        region: string;
        dataDir: string;
        listen: { port: number; tls: { certFile: string; keyFile: string; caFile: string } };
        auth: { privateKeyFile: string; adminTokenFile: string };
        regions: Record<string, { publicKeyFiles: string[] }>;
      };
      expect(shipped.region).toBe(region);
      const config = loadShipped(text, region, Object.keys(shipped.regions));

      const sts = objects.find((o) => o.kind === "StatefulSet")!;
      const pod = sts.spec.template.spec;
      const c = pod.containers.find((x: { name: string }) => x.name === "crr");
      const port = c.ports.find((p: { name: string }) => p.name === "http").containerPort as number;
      expect(port).toBe(shipped.listen.port);
      const scheme = config.listen.tls ? "HTTPS" : "HTTP";
      expect(c.livenessProbe.httpGet).toMatchObject({ path: "/healthz", port: "http", scheme });
      expect(c.readinessProbe.httpGet).toMatchObject({ path: "/readyz", port: "http", scheme });
      expect(c.startupProbe.httpGet).toMatchObject({ path: "/healthz", port: "http", scheme });
      for (const svc of objects.filter((o) => o.kind === "Service"))
        expect(svc.spec.ports.map((p: { targetPort: unknown }) => p.targetPort)).toEqual(["http"]);

      // The config file is where the args say, from this ConfigMap.
      const mounts = c.volumeMounts as Array<{ name: string; mountPath: string }>;
      const volumes = new Map<string, Record<string, Loose>>(
        pod.volumes.map((v: { name: string }) => [v.name, v]),
      );
      const configArg = c.args[c.args.indexOf("--config") + 1] as string;
      const configMount = under(configArg, mounts)!;
      expect(volumes.get(configMount.name)!.configMap.name).toBe(configMap.metadata.name);
      expect(path.basename(configArg)).toBe("crr.yaml");

      // Every file the config names is mounted; private material only from Secrets.
      const secretFiles = [
        shipped.auth.privateKeyFile,
        shipped.auth.adminTokenFile,
        shipped.listen.tls.keyFile,
      ];
      const publicFiles = [
        shipped.listen.tls.certFile,
        shipped.listen.tls.caFile,
        ...Object.values(shipped.regions).flatMap((r) => r.publicKeyFiles),
      ];
      for (const f of [...secretFiles, ...publicFiles])
        expect(under(f, mounts), `${f} is not mounted`).toBeDefined();
      for (const f of secretFiles)
        expect(volumes.get(under(f, mounts)!.name)!.secret, `${f} must come from a Secret`).toBeDefined();
      const dataMount = under(shipped.dataDir, mounts)!;
      expect(
        sts.spec.volumeClaimTemplates.map((t: { metadata: { name: string } }) => t.metadata.name),
      ).toContain(dataMount.name);

      // The preStop drain reaches this node with the config's admin token, and the grace period covers it.
      const drain = c.lifecycle.preStop.exec.command as string[];
      expect(drain).toContain("drain");
      const url = new URL(drain[drain.indexOf("--url") + 1]!);
      expect(url.protocol).toBe(config.listen.tls ? "https:" : "http:");
      expect(Number(url.port)).toBe(port);
      const env = Object.fromEntries(c.env.map((e: { name: string; value: string }) => [e.name, e.value]));
      expect(env.CRR_ADMIN_TOKEN_FILE).toBe(shipped.auth.adminTokenFile);
      const drainMs = Number(drain[drain.indexOf("--timeout-ms") + 1]);
      const graceMs = pod.terminationGracePeriodSeconds * 1000;
      expect(graceMs).toBeGreaterThanOrEqual(
        drainMs + config.shutdown.drainTimeoutMs + config.shutdown.readinessGraceMs,
      );

      // Non-root, read-only root filesystem, no privilege escalation.
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(c.securityContext).toMatchObject({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
      });
      expect(objects.some((o) => o.kind === "PodDisruptionBudget")).toBe(true);
    },
  );

  it("the regions of each shape name each other alike", () => {
    for (const shape of new Set(overlays.map((o) => o.shape))) {
      const configs = overlays
        .filter((o) => o.shape === shape)
        .map(
          (o) =>
            YAML.parse(fs.readFileSync(path.join(overlaysDir, shape, o.region, "crr.yaml"), "utf8")) as {
              region: string;
              regions: Record<string, { url: string }>;
            },
        );
      const names = configs.map((c) => c.region).sort();
      for (const c of configs) {
        expect(Object.keys(c.regions).sort(), `${shape}/${c.region}`).toEqual(names);
        expect(c.regions).toEqual(configs[0]!.regions);
      }
    }
  });
});
