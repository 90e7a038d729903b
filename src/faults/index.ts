export { seededRandom, startTcpProxy } from "./tcp-proxy.js";
export type { LinkFaults, ProxyMode, ProxyStats, TcpProxy, TcpProxyOptions } from "./tcp-proxy.js";
