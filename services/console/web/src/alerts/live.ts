// Live alert updates: one AlertService.Subscribe stream per page, resumed
// from the last cursor after a drop (the server replays everything after
// it, so nothing is missed), reconnecting with capped exponential backoff.
import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { AlertService } from "../gen/churnwatch/v1/alert_service_pb";
import type { AlertUpdate } from "../gen/churnwatch/v1/alerts_pb";

export type LiveStatus =
  | { kind: "connecting" }
  | { kind: "live" }
  | { kind: "retrying"; inMs: number; reason: string }
  | { kind: "stopped"; code: Code; reason: string };

export interface LiveOptions {
  onUpdate: (u: AlertUpdate) => void;
  onStatus: (s: LiveStatus) => void;
  signal: AbortSignal;
  // First and longest wait between reconnects (ms).
  minBackoff?: number;
  maxBackoff?: number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

// Codes after which reconnecting cannot help: the caller is signed out or
// not allowed. Everything else (network drop, server restart, a slow client
// cut off) is retried from the cursor.
// A stream up this long before it dropped counts as healthy.
const healthyMs = 10000;

const final = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.InvalidArgument, Code.Unimplemented]);

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// backoff is the wait before reconnect attempt n (0-based): doubling from
// min, capped at max, with up to 20% jitter so many browsers do not
// reconnect in step after a server restart.
export function backoff(n: number, min: number, max: number, rand = Math.random): number {
  const base = Math.min(max, min * 2 ** n);
  return Math.round(base * (0.8 + 0.2 * rand()));
}

// follow runs until the signal aborts or a final error; it returns the last
// cursor it saw.
export async function follow(client: Client<typeof AlertService>, o: LiveOptions): Promise<string> {
  const min = o.minBackoff ?? 500;
  const max = o.maxBackoff ?? 15000;
  const sleep = o.sleep ?? abortableSleep;
  let cursor = "";
  let attempt = 0;
  while (!o.signal.aborted) {
    o.onStatus({ kind: "connecting" });
    const started = Date.now();
    let got = false;
    let live = false;
    // Response headers mean the server accepted the stream, even before
    // the first update.
    const up = () => {
      if (!live) o.onStatus({ kind: "live" });
      live = true;
    };
    try {
      for await (const res of client.subscribe({ cursor }, { signal: o.signal, onHeader: up })) {
        up();
        got = true;
        const u = res.update;
        if (!u) continue;
        if (u.cursor) cursor = u.cursor;
        o.onUpdate(u);
      }
      // The server ended the stream (bounded stream lifetime): resume.
      attempt = 0;
    } catch (e) {
      if (o.signal.aborted) break;
      const err = ConnectError.from(e);
      if (final.has(err.code)) {
        o.onStatus({ kind: "stopped", code: err.code, reason: err.rawMessage });
        return cursor;
      }
      // A stream that delivered or stayed up a while was healthy: start the
      // backoff over. One that fails at once keeps backing off.
      if (got || Date.now() - started > healthyMs) attempt = 0;
      const wait = backoff(attempt++, min, max);
      o.onStatus({ kind: "retrying", inMs: wait, reason: err.rawMessage });
      await sleep(wait, o.signal);
    }
  }
  return cursor;
}
