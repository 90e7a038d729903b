export { PeerShipper } from "./peer-shipper.js";
export type { PeerShipperOptions, ShipperState } from "./peer-shipper.js";
export { ShipError } from "./ship-error.js";
