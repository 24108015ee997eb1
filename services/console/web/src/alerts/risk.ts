// The customer's last 180 days of activity and balance for the chart, from
// GetCustomerRisk's daily series.
//
// The series (GetCustomerRiskResponse.daily, CustomerDay) is being added to
// rules_admin_service.proto by another change. Until the generated clients
// here carry it, it is read structurally: a server that sends it is shown,
// one that does not gets no chart and the page says so. Nothing is invented.
import type { GetCustomerRiskResponse } from "../gen/churnwatch/v1/rules_admin_service_pb";
import type { DailySeries } from "../components/RiskChart";

// CustomerDay as protoc-gen-es generates it.
export interface CustomerDayShape {
  date: string; // YYYY-MM-DD, UTC
  transactions: number;
  balanceMinor?: bigint;
  currency: string;
}

function minorDigits(currency: string): number {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
  } catch {
    return 2; // not an ISO 4217 code Intl knows
  }
}

export function riskSeries(risk: GetCustomerRiskResponse): DailySeries | null {
  const daily = (risk as unknown as { daily?: CustomerDayShape[] }).daily;
  if (!daily || daily.length === 0) return null;
  const currency = daily.find((d) => d.currency)?.currency ?? "";
  const scale = 10 ** minorDigits(currency || "EUR");
  return {
    days: daily.map((d) => Date.parse(`${d.date}T00:00:00Z`) / 1000),
    activity: daily.map((d) => d.transactions),
    balance: daily.map((d) => (d.balanceMinor === undefined ? null : Number(d.balanceMinor) / scale)),
    currency,
  };
}
