export { classify, deadStreams, streamKey } from "./classify.js";
export type { Finding, FindingKind, SettledBy, StreamWatermarks } from "./classify.js";
export { DivergenceDetector, storeRemote } from "./detector.js";
export type { PeerScan, RemoteView } from "./detector.js";
export { DivergenceMonitor, findingId } from "./monitor.js";
export type { ScanReport } from "./monitor.js";
export { decide, establish, reconcileFindings, sameContent, sameIdentity } from "./reconcile.js";
export type { Decision, Established, Evidence, ReconcileIo } from "./reconcile.js";
