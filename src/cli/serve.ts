import { ConfigError, loadConfig } from "../config/index.js";
import { createLogger } from "../log.js";
import { runNode } from "../node/index.js";
import { realRuntime, shiftedRuntime } from "../runtime/index.js";
import { CliUsageError, parseCommand } from "./args.js";

const help = `crr serve --config FILE [--start-alone] [--accept-wal-loss]

Runs one region's node: the public API, the peer API, the shippers. Logs are JSON lines
on stdout. SIGTERM or SIGINT stops it cleanly (in-flight appends finish, WAL and store are
closed); a second signal exits at once.

Before it admits appends the node checks what it acknowledged against its store and its
peers, and refuses to start (exit 1, saying why) rather than lose or reissue a record:
  --start-alone      a region with no state of its own serves without asking its peers
                     what they decided (when none can be reached, and you accept that)
  --accept-wal-loss  move the WAL aside (kept as wal.abandoned-*) and start as a new
                     incarnation, when recovery could not restore acknowledged records`;

export async function runServe(argv: string[]): Promise<number> {
  const { values } = parseCommand("serve", argv, {
    config: { type: "string", short: "c" },
    "start-alone": { type: "boolean" },
    "accept-wal-loss": { type: "boolean" },
  });
  if (values.help) {
    process.stdout.write(`${help}\n`);
    return 0;
  }
  if (typeof values.config !== "string")
    throw new CliUsageError(`serve: --config FILE is required\n\n${help}`);
  let config;
  try {
    config = loadConfig(values.config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`crr: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger({ level: config.log.level, name: config.region });
  // Drill hook for the benchmark harness: run this node with its wall clock shifted.
  const offsetMs = Number(process.env.CRR_CLOCK_OFFSET_MS ?? 0);
  if (offsetMs) log.warn({ offsetMs }, "wall clock shifted for a clock-skew drill (CRR_CLOCK_OFFSET_MS)");
  let node;
  try {
    node = await runNode(config, log, {
      runtime: offsetMs ? shiftedRuntime(realRuntime, offsetMs) : undefined,
      startAlone: values["start-alone"] === true ? true : undefined,
      acceptWalLoss: values["accept-wal-loss"] === true,
    });
  } catch (err) {
    log.fatal({ err: (err as Error).message }, "not starting");
    process.stderr.write(`crr: ${(err as Error).message}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        log.warn({ signal }, "second signal: exiting at once");
        process.exit(130);
      }
      log.info({ signal }, "shutting down");
      const force = setTimeout(() => {
        log.error(
          { drainTimeoutMs: config.shutdown.drainTimeoutMs },
          "shutdown did not finish in time; exiting",
        );
        process.exit(1);
      }, config.shutdown.drainTimeoutMs);
      force.unref();
      node.close({ readinessGraceMs: config.shutdown.readinessGraceMs }).then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, "shutdown failed");
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}
