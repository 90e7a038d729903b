export { HttpPeerLink, headerIncarnation, headerRule, undiciTransport } from "./http-link.js";
export type {
  ClientTls,
  HttpPeerLinkOptions,
  PeerRequest,
  PeerResponse,
  PeerTransport,
} from "./http-link.js";
export { codingsRead, decodeBody, type BatchCoding } from "./coding.js";
export { LinkError, classify } from "./errors.js";
export { fromWire } from "./types.js";
export type {
  BucketsAnswer,
  ExportPage,
  ExportQuery,
  PeerLink,
  ReplicateAnswer,
  StreamPage,
  StreamQuery,
  StreamWatermark,
  WalAnswer,
  WatermarksView,
  Withheld,
  WireVersion,
} from "./types.js";
