/**
 * `crr bootstrap --from s3|PEER` (offline): seed a new or wiped region's store before its
 * node first starts, from the S3 archive or from one peer's own streams. The node's startup
 * bootstrap then asks every peer only for what the seed lacks (streams resume after the
 * seeded LSNs, the winners' export leaves them out), and comes up from there.
 */
import type { ArchiveSeed } from "../archive/index.js";
import { timeoutSignal } from "../runtime/index.js";
import { StartupRefusedError } from "./startup.js";
import { noteCut, noteSeeded, seedFromPeer, type SeededStream } from "./copy.js";
import type { Region } from "./region.js";
import { bootstrapRunning } from "./wal-open.js";
import { archiveSeedOf } from "./wiring.js";

export interface SeedReport {
  from: string;
  records: number;
  streams: SeededStream[];
  /** From the archive: other regions' streams left to the peers, and why. */
  passedOver?: string[];
  /** From the archive: streams it holds only up to a hole or a damaged object (the peers give the rest they hold). */
  cut?: ArchiveSeed["cut"];
}

/** `rebuilding`: `crr rebuild` seeds a store it made afresh (the region's own WAL replayed into it). */
export async function seedRegion(
  region: Region,
  from: string,
  timeoutMs: number,
  o: { rebuilding?: boolean } = {},
): Promise<SeedReport> {
  if (!o.rebuilding && !(await bootstrapRunning(region.store)))
    throw new StartupRefusedError(
      `region ${region.name} holds state of its own (its store is not empty and not bootstrapping): crr bootstrap only seeds a new or wiped region; see crr rebuild`,
    );
  const accepts = (origin: string, tenant: string) => region.policy.accepts(origin, tenant);
  if (from === "s3") {
    const seed = archiveSeedOf(region, true);
    if (!seed) throw new StartupRefusedError(`the config of ${region.name} names no archive (archive.s3)`);
    const r = await seed();
    if (!o.rebuilding) await noteSeeded(region.store, r.streams);
    // The node's bootstrap checks, after its copy from the peers, that they filled what the
    // archive holds of our own streams only in part (startup.ts): noted for it.
    await noteCut(region.store, r.cut);
    return { from, records: r.records, streams: r.streams, passedOver: r.passedOver, cut: r.cut };
  }
  const link = region.links.get(from);
  if (!link)
    throw new StartupRefusedError(
      `--from ${from}: not a peer of ${region.name} (peers: ${[...region.links.keys()].join(", ") || "none"}; or s3)`,
    );
  const view = await link.watermarks(timeoutSignal(region.runtime, timeoutMs));
  if (view.bootstrapping === true)
    throw new StartupRefusedError(
      `${from} is bootstrapping itself: it holds only part of what the mesh decided`,
    );
  const r = await seedFromPeer({ region: region.name, link, view, store: region.store, accepts });
  await noteSeeded(region.store, r.streams);
  await region.store.syncNow();
  return { from, records: r.copied, streams: r.streams };
}
