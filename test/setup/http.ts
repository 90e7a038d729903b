/**
 * Every test's HTTP calls use a fresh connection: a node restarted under a test (SIGKILL,
 * SIGTERM, a front pointed elsewhere) must not fail the next request on a stale keep-alive
 * socket, which would fail a test by chance.
 */
import { Agent, setGlobalDispatcher } from "undici";

setGlobalDispatcher(new Agent({ pipelining: 0 }));
