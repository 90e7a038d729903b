/**
 * crr installs like any npm package: `npm pack`, install the tarball into a fresh project,
 * then append and read a record through `openRegion` from there, type-checked against the
 * shipped .d.ts files.
 *
 * The install skips install scripts and reuses this checkout's compiled better-sqlite3 addon
 * when the versions match: compiling it from source (no prebuilt binaries are reachable here)
 * takes over a minute and is not what this test is about.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

const npm = (args: string[], cwd: string) =>
  execFileSync("npm", args, {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, npm_config_audit: "false", npm_config_fund: "false" },
  });

describe("the npm package", () => {
  it("packs, installs into a fresh project, and appends and reads through openRegion", () => {
    const work = tempDir("crr-pack-");
    const packed = JSON.parse(npm(["pack", "--json", "--pack-destination", work], repoRoot)) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    const files = packed[0]!.files.map((f) => f.path);
    expect(files).toContain("dist/index.js");
    expect(files).toContain("dist/index.d.ts");
    expect(files).toContain("dist/cli/main.js");
    expect(files.some((f) => f.startsWith("src/") || f.startsWith("test/"))).toBe(false);

    const app = path.join(work, "app");
    fs.mkdirSync(app);
    fs.writeFileSync(
      path.join(app, "package.json"),
      JSON.stringify({ name: "app", private: true, type: "module" }),
    );
    npm(["install", "--ignore-scripts", path.join(work, packed[0]!.filename)], app);
    const ours = path.join(repoRoot, "node_modules/better-sqlite3");
    const theirs = path.join(app, "node_modules/better-sqlite3");
    const version = (dir: string) =>
      (JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { version: string }).version;
    if (version(ours) === version(theirs))
      fs.cpSync(path.join(ours, "build"), path.join(theirs, "build"), { recursive: true });
    else npm(["rebuild", "better-sqlite3"], app);

    fs.writeFileSync(
      path.join(app, "main.ts"),
      `import { openRegion, type AppendResult, type RegionHandle } from "crr";
const dataDir = process.argv[2]!;
const region: RegionHandle = await openRegion({
  region: "solo-1", dataDir, listen: { host: "127.0.0.1", port: 0 },
  regions: { "solo-1": { url: "http://127.0.0.1:1" } }, crr: { enabled: false },
});
const first: AppendResult = await region.append({ key: "pcs-7f3a", tenant: "tenant-a", outcome: "accepted", body: { score: 3 } });
const again = await region.append({ key: "pcs-7f3a", tenant: "tenant-a", outcome: "rejected" });
const stored = await region.get("pcs-7f3a");
await region.close();
console.log(JSON.stringify({ first, again, stored }));
`,
    );
    fs.writeFileSync(
      path.join(app, "tsconfig.json"),
      // A Node service has @types/node; take this checkout's rather than install it.
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          outDir: "out",
          types: ["node"],
          typeRoots: [path.join(repoRoot, "node_modules/@types")],
        },
        files: ["main.ts"],
      }),
    );
    execFileSync(process.execPath, [path.join(repoRoot, "node_modules/typescript/bin/tsc"), "-p", app], {
      encoding: "utf8",
    });
    const out = execFileSync(process.execPath, [path.join(app, "out/main.js"), path.join(work, "data")], {
      cwd: app,
      encoding: "utf8",
    });
    const result = JSON.parse(out.trim().split("\n").at(-1)!);
    expect(result.first).toMatchObject({
      key: "pcs-7f3a",
      outcome: "accepted",
      duplicate: false,
      origin: "solo-1",
      lsn: 1,
    });
    expect(result.again).toMatchObject({ outcome: "accepted", duplicate: true });
    expect(result.stored).toMatchObject({
      key: "pcs-7f3a",
      tenant: "tenant-a",
      outcome: "accepted",
      body: { score: 3 },
    });
  });
});
