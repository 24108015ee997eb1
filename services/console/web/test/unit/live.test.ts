import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { AlertService, SubscribeResponseSchema } from "../../src/gen/churnwatch/v1/alert_service_pb";
import type { LiveStatus } from "../../src/alerts/live";
import { backoff, follow } from "../../src/alerts/live";
import { alert, update } from "./fixtures";

describe("follow", () => {
  it("resumes from the last cursor after a drop, with backoff, and misses nothing", async () => {
    const cursors: string[] = [];
    let calls = 0;
    const transport = createRouterTransport(({ service }) => {
      service(AlertService, {
        async *subscribe(req) {
          cursors.push(req.cursor);
          calls++;
          if (calls === 1) {
            yield create(SubscribeResponseSchema, { update: update(alert({ alertId: "a1" }), "c1") });
            yield create(SubscribeResponseSchema, { update: update(alert({ alertId: "a2" }), "c2") });
            throw new ConnectError("connection reset", Code.Unavailable);
          }
          if (calls === 2) throw new ConnectError("still down", Code.Unavailable);
          yield create(SubscribeResponseSchema, { update: update(alert({ alertId: "a3" }), "c3") });
          throw new ConnectError("token expired", Code.Unauthenticated);
        },
      });
    });
    const seen: string[] = [];
    const statuses: LiveStatus[] = [];
    const waits: number[] = [];
    const ctl = new AbortController();
    const last = await follow(createClient(AlertService, transport), {
      signal: ctl.signal,
      onUpdate: (u) => seen.push(u.alert!.alertId),
      onStatus: (s) => statuses.push(s),
      minBackoff: 100,
      maxBackoff: 1000,
      sleep: async (ms) => { waits.push(ms); },
    });
    expect(seen).toEqual(["a1", "a2", "a3"]);
    expect(cursors).toEqual(["", "c2", "c2"]);
    expect(last).toBe("c3");
    // Two failed attempts in a row: the second wait is about twice the first.
    expect(waits).toHaveLength(2);
    expect(waits[0]).toBeGreaterThanOrEqual(80);
    expect(waits[0]).toBeLessThanOrEqual(100);
    expect(waits[1]).toBeGreaterThanOrEqual(160);
    expect(waits[1]).toBeLessThanOrEqual(200);
    expect(statuses.map((s) => s.kind)).toEqual(["connecting", "live", "retrying", "connecting", "live", "retrying", "connecting", "live", "stopped"]);
    const stop = statuses[statuses.length - 1];
    expect(stop.kind === "stopped" && stop.code).toBe(Code.Unauthenticated);
  });

  it("stops when the page goes away", async () => {
    const transport = createRouterTransport(({ service }) => {
      service(AlertService, {
        async *subscribe(_req, ctx) {
          yield create(SubscribeResponseSchema, { update: update(alert(), "c1") });
          await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
        },
      });
    });
    const ctl = new AbortController();
    const seen: string[] = [];
    const done = follow(createClient(AlertService, transport), {
      signal: ctl.signal,
      onUpdate: (u) => { seen.push(u.cursor); ctl.abort(); },
      onStatus: () => {},
    });
    await expect(done).resolves.toBe("c1");
    expect(seen).toEqual(["c1"]);
  });

  it("backs off exponentially up to the cap", () => {
    const mid = () => 0.5;
    expect([0, 1, 2, 3, 10].map((n) => backoff(n, 500, 15000, mid))).toEqual([450, 900, 1800, 3600, 13500]);
    expect(backoff(3, 500, 15000, () => 1)).toBe(4000);
  });
});
