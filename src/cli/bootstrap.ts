/**
 * `crr bootstrap --config FILE --from s3|PEER`: seed a new or wiped region (offline: its node
 * is stopped) from the S3 archive or from one peer's own streams; its node, started next,
 * copies from every peer only what the seed lacks.
 */
import { silentLogger } from "../log.js";
import { Region, seedRegion } from "../node/index.js";
import { CliUsageError, loadConfigOrUsage, parseCommand } from "./args.js";

const bootstrapHelp = `crr bootstrap --config FILE --from s3|PEER

Seeds a new or wiped region while its node is stopped: --from s3 restores every origin's
archived stream (archive.s3) from LSN 1 up to its first hole, each object checked (its
origin's seal, a whole scan); --from PEER copies that peer's own streams. Then start the
node (crr serve): its bootstrap asks every peer only for what the seed lacks (streams
resume after the seeded LSNs, the winners' export leaves them out) and it comes up from
there. Refused for a region that holds state of its own (see crr rebuild). With
archive.bootstrap: true a node that starts empty restores from the archive by itself.`;

/** What a seed wrote of the intact objects past a stream's cut, for the operator. */
export function sayBeyond(
  beyond: { records: number; objects: number; damaged: string[] } | undefined,
): string {
  if (!beyond) return "";
  const damaged = beyond.damaged.length > 0 ? `; refused there: ${beyond.damaged.join("; ")}` : "";
  return `; ${beyond.records} records of the ${beyond.objects} intact objects past it restored${damaged}`;
}

export async function runBootstrap(argv: string[]): Promise<number> {
  const { values } = parseCommand("bootstrap", argv, {
    config: { type: "string", short: "c" },
    from: { type: "string" },
  });
  if (values.help) {
    process.stdout.write(`${bootstrapHelp}\n`);
    return 0;
  }
  if (typeof values.config !== "string" || typeof values.from !== "string")
    throw new CliUsageError(`bootstrap: --config FILE and --from s3|PEER are required\n\n${bootstrapHelp}`);
  const config = loadConfigOrUsage(values.config);
  const from = values.from;
  if (from !== "s3" && (from === config.region || !config.regions[from]))
    throw new CliUsageError(`bootstrap: --from ${from}: neither s3 nor another region of ${values.config}`);
  const region = await Region.open(config, { log: silentLogger() });
  try {
    const r = await seedRegion(region, from, 30_000);
    const say = (s: string) => process.stdout.write(`${s}\n`);
    for (const s of r.streams) say(`  ${s.origin} ${s.incarnation}: LSNs 1..${s.lsn}`);
    for (const why of r.passedOver ?? []) say(`  passed over (the peers give it): ${why}`);
    for (const c of r.cut ?? [])
      say(
        `  cut short at LSN ${c.lsn} of ${c.archivedLsn}: ${c.origin}/${c.incarnation} (${c.why})${sayBeyond(c.beyond)}; the peers give what they hold after it${c.origin === config.region ? " (the node refuses to start if they do not hold the rest)" : ""}`,
      );
    say(
      `seeded ${config.region} from ${from === "s3" ? "the archive" : from}: ${r.records} records in ${r.streams.length} streams; start the node (crr serve) to copy the rest from the peers`,
    );
    return 0;
  } finally {
    await region.close();
  }
}
