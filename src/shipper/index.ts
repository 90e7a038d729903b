export { PeerShipper, backoffMs, streamLsn } from "./peer-shipper.js";
export type { PeerShipperOptions, ShipperEvents, ShipperState } from "./peer-shipper.js";
export { StreamGapError } from "./stream-reader.js";
export type { OwnRecords, ShipperWal } from "./stream-reader.js";
