/**
 * Which PostgreSQL failures say the server did not answer (503 and Retry-After: the append may
 * pass on a retry, through this node or another of the region) rather than refused the work.
 */
import { describe, expect, it } from "vitest";
import { unreachable } from "./postgres-store.js";

const coded = (code: string, message = "x") => Object.assign(new Error(message), { code });

describe("a PostgreSQL failure that says the server did not answer", () => {
  it.each([
    ["a refused connection", coded("ECONNREFUSED")],
    ["a reset connection", coded("ECONNRESET")],
    ["a connection timed out", coded("ETIMEDOUT")],
    ["a connection closed under a write", coded("EPIPE")],
    ["a host not reachable", coded("EHOSTUNREACH")],
    ["a network not reachable", coded("ENETUNREACH")],
    ["SQLSTATE 08006 (connection failure)", coded("08006")],
    ["SQLSTATE 57P01 (admin shutdown)", coded("57P01")],
    ["SQLSTATE 57P03 (cannot connect now)", coded("57P03")],
    ["a connection ended under a query", new Error("Connection terminated unexpectedly")],
    ["a pool's connect timeout", new Error("timeout exceeded when trying to connect")],
  ])("%s", (_what, err) => expect(unreachable(err)).toBe(true));

  it.each([
    ["a syntax error (42601)", coded("42601")],
    ["a serialization failure (40001)", coded("40001")],
    ["a full disk (53100)", coded("53100")],
    ["a statement timeout (57014)", coded("57014")],
    ["an error without a code", new Error("something else")],
    ["a longer code that only contains 57P01", coded("X57P01")],
    ["a longer code that only starts with 57P01", coded("57P011")],
    [
      "a message that only names a terminated connection later",
      new Error("trigger said: Connection terminated"),
    ],
    ["not an error", undefined],
  ])("not %s", (_what, err) => expect(unreachable(err)).toBe(false));
});
