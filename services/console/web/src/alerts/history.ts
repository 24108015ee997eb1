// An alert's history as the RM reads it: for each version, who, when and
// what changed compared with the version before.
import type { AlertHistoryEntry } from "../gen/churnwatch/v1/alerts_pb";
import { changeLabel, severityLabel, stateLabel } from "../format";

export interface HistoryLine {
  version: bigint;
  entry: AlertHistoryEntry;
  who: string;
  what: string;
}

export function historyLines(history: AlertHistoryEntry[]): HistoryLine[] {
  const sorted = [...history].sort((a, b) => (a.version < b.version ? -1 : a.version > b.version ? 1 : 0));
  let prev: AlertHistoryEntry | undefined;
  return sorted.map((e) => {
    const parts = [changeLabel[e.change]];
    if (prev && prev.state !== e.state) parts.push(`state ${stateLabel[prev.state]} → ${stateLabel[e.state]}`);
    if (prev && prev.severity !== e.severity) parts.push(`severity ${severityLabel[prev.severity]} → ${severityLabel[e.severity]}`);
    if (!prev) parts.push(`state ${stateLabel[e.state]}, severity ${severityLabel[e.severity]}`);
    prev = e;
    return { version: e.version, entry: e, who: e.actor === "system" || !e.actor ? "churnwatch (automatic)" : e.actor, what: parts.join("; ") };
  });
}
