export { LocalMesh, crrMainDefault } from "./mesh.js";
export type { MeshNode, MeshOptions, NodeSpec } from "./mesh.js";
export { deepMerge } from "./merge.js";
export { waitUntil } from "./wait.js";
