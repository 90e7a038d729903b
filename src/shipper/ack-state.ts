/**
 * What a shipper keeps on disk per peer (`<dataDir>/shipper/<peer>.json`): the LSN the peer
 * last acknowledged durably for our incarnation (a floor for retention and recovery evidence
 * before the peer answers again), and the tenants this peer was being sent (a widened
 * policy means records below the watermark that the peer never got).
 */
import fs from "node:fs";
import { writeFileDurable } from "../util/durable-file.js";
import type { FileOps } from "../util/file-ops.js";

export interface AckState {
  peer: string;
  incarnation: string;
  acked: number;
  /**
   * The tenants this peer was being sent: a list under a selective policy, "*" for every
   * tenant. Undefined: not known (an older state file), which a widened policy treats as
   * "backfill everything below the watermark".
   */
  tenants?: string[] | "*";
}

/** The saved state, or undefined when there is none (or it is unreadable: the peer is asked anyway). */
export function readAckState(file: string, peer: string): AckState | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const s = JSON.parse(text) as AckState;
    if (s.peer !== peer || typeof s.acked !== "number" || typeof s.incarnation !== "string") return undefined;
    return s;
  } catch {
    return undefined; // a state file cut by a crash mid-replacement cannot happen (durable rename); a hand edit can
  }
}

export async function writeAckState(file: string, s: AckState, ops?: FileOps): Promise<void> {
  await writeFileDurable(file, `${JSON.stringify(s)}\n`, ops);
}
