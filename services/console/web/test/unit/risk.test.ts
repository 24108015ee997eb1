import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { GetCustomerRiskResponseSchema } from "../../src/gen/churnwatch/v1/rules_admin_service_pb";
import { riskSeries } from "../../src/alerts/risk";
import { withUnit } from "../../src/format";

describe("risk series", () => {
  it("is absent when the service sends no daily series", () => {
    expect(riskSeries(create(GetCustomerRiskResponseSchema, { customerId: "C1" }))).toBeNull();
  });

  it("turns CustomerDay entries into chart columns, balances from minor units, gaps kept", () => {
    const risk = Object.assign(create(GetCustomerRiskResponseSchema, { customerId: "C1" }), {
      daily: [
        { date: "2025-08-30", transactions: 0, currency: "" },
        { date: "2025-08-31", transactions: 3, balanceMinor: 1234567n, currency: "EUR" },
        { date: "2025-09-01", transactions: 1, balanceMinor: 5000n, currency: "EUR" },
      ],
    });
    const s = riskSeries(risk)!;
    expect(s.days).toEqual([Date.UTC(2025, 7, 30) / 1000, Date.UTC(2025, 7, 31) / 1000, Date.UTC(2025, 8, 1) / 1000]);
    expect(s.activity).toEqual([0, 3, 1]);
    expect(s.balance).toEqual([null, 12345.67, 50]);
    expect(s.currency).toBe("EUR");
  });
});

describe("figures", () => {
  it("say what they are counted in", () => {
    expect(withUnit("0.26", "ratio", "activity.drop")).toBe("0.26 of the usual activity");
    expect(withUnit("1.00", "ratio", "outflow.large")).toBe("1.00 of the balance");
    expect(withUnit("120000.00", "EUR", "outflow.large")).toBe("120000.00 EUR");
    expect(withUnit("91", "days", "dormancy.declining")).toBe("91 days");
    expect(withUnit("2", "count", "complaints")).toBe("2");
    expect(withUnit("", "EUR")).toBe("—");
  });
});
