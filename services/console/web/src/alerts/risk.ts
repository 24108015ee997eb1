// The customer's last 180 days of activity and balance for the chart, from
// GetCustomerRisk.
//
// TODO(daily series): GetCustomerRiskResponse has no daily series yet
// (another change adds one to rules_admin_service.proto). Until it lands
// this returns null and the page says so; it never invents figures.
import type { GetCustomerRiskResponse } from "../gen/churnwatch/v1/rules_admin_service_pb";
import type { DailySeries } from "../components/RiskChart";

export function riskSeries(_risk: GetCustomerRiskResponse): DailySeries | null {
  return null;
}
