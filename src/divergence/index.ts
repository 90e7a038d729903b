export { classify, streamKey } from "./classify.js";
export type { Finding, FindingKind, StreamWatermarks } from "./classify.js";
export { DivergenceDetector, fromWire, httpRemote, storeRemote } from "./detector.js";
export type { PeerScan, RemoteView } from "./detector.js";
export { DivergenceMonitor, findingId } from "./monitor.js";
export type { ScanReport } from "./monitor.js";
export { PeerClient, PeerRequestError } from "./peer-client.js";
