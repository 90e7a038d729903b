export { startTcpProxy } from "./tcp-proxy.js";
export type { ProxyMode, TcpProxy, TcpProxyOptions } from "./tcp-proxy.js";
