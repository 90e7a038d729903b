/**
 * A real PostgreSQL for the tests and the benchmarks: a temporary cluster of Debian's `postgresql` package
 * (scripts/ensure-system-packages.sh installs it), run as the `postgres` user when the
 * tests run as root (PostgreSQL refuses root), with password authentication on 127.0.0.1,
 * on a free port (PostgreSQL cannot bind port 0: one is picked and another tried on a
 * collision), and stopped by its PID. Each test file (or benchmarked region) takes a database of its own.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";

export interface PostgresServer {
  /** postgres://crr:PASSWORD@127.0.0.1:PORT/postgres (a superuser). */
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/** The directory of initdb and postgres, newest installed version first. */
export function postgresBin(): string {
  const root = "/usr/lib/postgresql";
  const versions = fs.existsSync(root)
    ? fs
        .readdirSync(root)
        .filter((v) => fs.existsSync(path.join(root, v, "bin", "postgres")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0)
    throw new Error(
      "PostgreSQL is not installed (Debian: apt-get install postgresql; scripts/ensure-system-packages.sh does it)",
    );
  return path.join(root, versions[0]!, "bin");
}

/** Run as the postgres user when root (uid/gid for spawn), else as ourselves. */
function owner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
  return { uid, gid };
}

function initCluster(dir: string, password: string, who: ReturnType<typeof owner>): void {
  const pwfile = path.join(dir, "pw");
  fs.writeFileSync(pwfile, password, { mode: 0o600 });
  const data = path.join(dir, "data");
  fs.mkdirSync(data, { mode: 0o700 });
  if (who) {
    for (const p of [dir, data, pwfile]) fs.chownSync(p, who.uid, who.gid);
  }
  execFileSync(
    path.join(postgresBin(), "initdb"),
    ["-D", data, "-U", "crr", "-A", "scram-sha-256", "--pwfile", pwfile, "--no-sync", "-E", "UTF8"],
    { stdio: ["ignore", "ignore", "pipe"], ...(who ?? {}) },
  );
  fs.rmSync(pwfile);
}

async function waitReady(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`postgres exited (${child.exitCode}): ${log()}`);
    const c = new pg.Client({ connectionString: url });
    try {
      await c.connect();
      await c.query("SELECT 1");
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`postgres not ready after 60 s: ${(err as Error).message}`);
    } finally {
      await c.end().catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Start a temporary cluster; `stop` ends it (SIGINT: fast shutdown) and removes its files. */
export async function startPostgres(): Promise<PostgresServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crr-pg-"));
  const who = owner();
  const password = randomBytes(12).toString("hex");
  initCluster(dir, password, who);
  for (let attempt = 0; ; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 40_000);
    let output = "";
    const child = spawn(
      path.join(postgresBin(), "postgres"),
      ["-D", path.join(dir, "data"), "-p", String(port), "-k", dir, "-c", "listen_addresses=127.0.0.1"],
      { stdio: ["ignore", "pipe", "pipe"], ...(who ?? {}) },
    );
    child.stdout!.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr!.on("data", (b: Buffer) => (output += b.toString()));
    const url = `postgres://crr:${password}@127.0.0.1:${port}/postgres`;
    try {
      await waitReady(url, child, () => output);
    } catch (err) {
      child.kill("SIGKILL");
      await exited(child);
      if (attempt < 5 && /could not bind|Address already in use/.test(output)) continue;
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return {
      url,
      port,
      pid: child.pid!,
      stop: async () => {
        child.kill("SIGINT");
        await exited(child);
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}

/** A new empty database on `serverUrl`; returns its URL. */
export async function freshDatabase(serverUrl: string, prefix = "t"): Promise<string> {
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  const c = new pg.Client({ connectionString: serverUrl });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}
