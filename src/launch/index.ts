export { LocalMesh, crrMainDefault } from "./mesh.js";
export type { MeshNode, MeshOptions, NodeSpec } from "./mesh.js";
export { deepMerge } from "./merge.js";
export { waitUntil } from "./wait.js";
export { prometheusConfig, startPrometheus } from "./prometheus.js";
export type { PrometheusOptions, PrometheusServer } from "./prometheus.js";
