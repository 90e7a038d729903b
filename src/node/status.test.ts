/** What `crr drain` and status' caughtUp trust of the peers' acknowledgements. */
import { describe, expect, it } from "vitest";
import { allCaughtUp } from "./status.js";

describe("allCaughtUp", () => {
  it("needs every peer at the durable end, with an acknowledgement of the instance it has now", () => {
    expect(allCaughtUp([])).toBe(true);
    expect(allCaughtUp([{ behindRecords: 0 }, { behindRecords: 0 }])).toBe(true);
    expect(allCaughtUp([{ behindRecords: 0 }, { behindRecords: 3 }])).toBe(false);
    // A restarted peer's predecessor acknowledged everything; what the new one holds is unread.
    expect(allCaughtUp([{ behindRecords: 0 }, { behindRecords: 0, ackInDoubt: true }])).toBe(false);
  });
});
