// Alerts for the unit tests, built with the generated schemas.
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AlertSchema, AlertState, AlertUpdateSchema, AlertChange } from "../../src/gen/churnwatch/v1/alerts_pb";
import type { Alert } from "../../src/gen/churnwatch/v1/alerts_pb";
import { ExplanationSchema, Severity, Stage, Tier } from "../../src/gen/churnwatch/v1/common_pb";
import type { Session } from "../../src/api/session";

export const hour = 3600 * 1000;

export function alert(init: MessageInitShape<typeof AlertSchema> = {}): Alert {
  return create(AlertSchema, {
    alertId: "a-1",
    customerId: "C1001",
    customerDisplayName: "Wang L.",
    tier: Tier.HIGH_NET_WORTH,
    managerId: "rm-001",
    branchId: "br-01",
    state: AlertState.OPEN,
    severity: Severity.HIGH,
    score: 65,
    stage: Stage.DECLINING,
    version: 1n,
    recommendedAction: "Call the customer within 4 hours.",
    ackDueAt: timestampFromDate(new Date(Date.now() + 4 * hour)),
    reasons: [create(ExplanationSchema, {
      ruleId: "outflow.large", observed: "120000.00", threshold: "100000.00", unit: "EUR",
      thresholdVersion: 3n, eventIds: ["t-1", "t-2"], detail: "One transfer of 120000.00 EUR to another bank.",
    })],
    ...init,
  });
}

export function update(a: Alert, cursor: string, change = AlertChange.UPDATED) {
  return create(AlertUpdateSchema, { cursor, change, alert: a });
}

export function session(role: string, sub = "rm-001", branch = ""): Session {
  return { sub, role, branch, expiresAt: "", devMode: true };
}
