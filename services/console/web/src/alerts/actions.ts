// Which lifecycle actions an alert offers in its current state (SPEC §5).
// The alerts service enforces the same; this only avoids offering buttons
// that would be refused.
import type { Alert } from "../gen/churnwatch/v1/alerts_pb";
import { AlertState } from "../gen/churnwatch/v1/alerts_pb";
import type { Session } from "../api/session";
import { mayReassign } from "../api/session";

export interface Offered {
  acknowledge: boolean;
  snooze: boolean;
  resolve: boolean;
  reassign: boolean;
}

export function offered(a: Alert, s: Session): Offered {
  const closed = a.state === AlertState.RESOLVED;
  return {
    acknowledge: a.state === AlertState.OPEN || a.state === AlertState.ESCALATED,
    snooze: !closed,
    resolve: !closed,
    reassign: !closed && mayReassign(s),
  };
}
