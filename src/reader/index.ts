export { Reader } from "./reader.js";
export type { ReaderOptions, ReplicateAnswer, ReplicateRequest } from "./reader.js";
