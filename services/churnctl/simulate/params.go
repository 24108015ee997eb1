package simulate

// Params holds every knob of the synthetic bank in one place, so that the
// simulator can be tuned against the real rules engine without touching
// the generator. DefaultParams returns the values the package is designed
// around; Config.Params overrides them.
//
// Money is given in cents of the currency's major unit (EUR cents with the
// default currency) and converted to the configured currency's minor units
// when a customer is planned. Rates are probabilities per customer (per 12
// months where noted); activity factors multiply the expected number of
// customer-initiated transactions.
type Params struct {
	// TierMix is the share of customers per tier, in the order
	// HIGH_NET_WORTH, POTENTIAL, MASS, BASIC.
	TierMix [4]float64
	// Tiers holds the behaviour of each tier, same order as TierMix.
	Tiers [4]TierParams

	// CustomersPerManager sets the number of relationship managers
	// (rm-001 …); ManagersPerBranch groups them in branches (br-01 …).
	CustomersPerManager int
	ManagersPerBranch   int
	// UnassignedRate is the share of customers without a manager.
	UnassignedRate float64

	// SalaryRate is the share of customers paid a monthly SALARY; the
	// others receive a monthly pension TRANSFER_IN (PensionRate of them)
	// or bring cash as DEPOSITs.
	SalaryRate  float64
	PensionRate float64
	// SalaryDayJitter moves the salary by up to ± this many days per month.
	SalaryDayJitter int
	// BonusRate is the share of salaried customers with a 13th salary in
	// December.
	BonusRate float64
	// SpendMin/SpendMax bound the share of income a customer spends.
	SpendMin, SpendMax float64
	// ActivityMin/ActivityMax bound the per-customer activity level that
	// scales transaction counts (not the money spent).
	ActivityMin, ActivityMax float64
	// WeeklyNoise is the ± relative noise on a week's transaction count.
	WeeklyNoise float64
	// RentRate is the share of customers paying rent by monthly transfer to
	// another bank; RentShareMin/Max of their income.
	RentRate                   float64
	RentShareMin, RentShareMax float64
	// ExternalSavingsRate is the share of customers moving a fixed
	// ExternalSavingsShare* of income to a broker at another bank monthly.
	ExternalSavingsRate                              float64
	ExternalSavingsShareMin, ExternalSavingsShareMax float64
	// NewAccountRate is the share of multi-account customers whose last
	// account is opened during the timeline (ACCOUNT_OPENED).
	NewAccountRate float64

	Noise NoiseParams
	Churn ChurnParams
}

// TierParams is the behaviour of one customer tier.
type TierParams struct {
	// IncomeMinCents/IncomeMaxCents bound the monthly income.
	IncomeMinCents, IncomeMaxCents int64
	// SavingsMonthsMin/Max: initial savings as months of income.
	SavingsMonthsMin, SavingsMonthsMax float64
	// Expected counts per month at activity level 1.
	CardPerMonth, ATMPerMonth, DepositPerMonth, LoginPerMonth float64
	// MiscOutPerMonth: small transfers to other banks (bills, friends);
	// MiscInPerMonth: small transfers in from other banks (refunds, friends).
	MiscOutPerMonth, MiscInPerMonth float64
	// MonthlyFeeCents is the account package fee on the current account.
	MonthlyFeeCents int64
	// SecondAccountRate/ThirdAccountRate: probability of a savings account
	// and of a second savings (deposit) account.
	SecondAccountRate, ThirdAccountRate float64
	// OutflowAmountCents mirrors the SPEC §4 outflow.large tier amount:
	// ordinary external transfers stay under Noise.ExternalTierCap of it.
	OutflowAmountCents int64
}

// NoiseParams is the realistic noise of stable customers that a rules
// engine must not mistake for churn. With the defaults it stays under the
// SPEC §4 default thresholds, except LongAbsence, which is meant to cause
// a few false alarms.
type NoiseParams struct {
	// MonthFactorMin/Max bound the per-month activity factor (irregular
	// months); BusyMonthRate months get BusyMonthFactor instead.
	MonthFactorMin, MonthFactorMax float64
	BusyMonthRate, BusyMonthFactor float64
	// HolidayRate is the probability of a holiday per 12 months, lasting
	// HolidayMinDays…HolidayMaxDays with activity HolidayActivityMin…Max
	// (cards still used abroad). HolidaySummerShare of them start in July
	// or August.
	HolidayRate                            float64
	HolidayMinDays, HolidayMaxDays         int
	HolidayActivityMin, HolidayActivityMax float64
	HolidaySummerShare                     float64
	// LongAbsenceRate is the per-customer probability of a long absence
	// (sabbatical, hospital) of LongAbsenceMinDays…MaxDays at
	// LongAbsenceActivity: a deliberate source of activity.drop false alarms.
	LongAbsenceRate                        float64
	LongAbsenceMinDays, LongAbsenceMaxDays int
	LongAbsenceActivity                    float64
	// BigPurchaseRate is the probability per 12 months of a one-off card
	// purchase of BigPurchaseIncomeMin…Max months of income.
	BigPurchaseRate                            float64
	BigPurchaseIncomeMin, BigPurchaseIncomeMax float64
	// OccasionalExternalRate is the probability per 12 months of an
	// external transfer of OccasionalIncomeMin…Max months of income
	// (tuition, a car, an investment), capped like every ordinary transfer.
	OccasionalExternalRate                   float64
	OccasionalIncomeMin, OccasionalIncomeMax float64
	// LateSalaryRate is the probability per 12 months that one salary is
	// paid LateSalaryMinDays…MaxDays late.
	LateSalaryRate                       float64
	LateSalaryMinDays, LateSalaryMaxDays int
	// MildComplaintRate is the probability per 12 months of one complaint
	// with sentiment in MildSentimentMin…Max (above the −0.6 floor).
	MildComplaintRate                  float64
	MildSentimentMin, MildSentimentMax float64
	// Ordinary external outflows (rent, savings, bills, occasional) are
	// skipped or capped so that each stays ≤ ExternalShareCap × the
	// account's and the customer's balance before it, the last 7 days'
	// external outflows stay ≤ ExternalShareCap × the 90-day average
	// end-of-day balance, and each stays ≤ ExternalTierCap × the tier
	// outflow amount.
	ExternalShareCap float64
	ExternalTierCap  float64
	// QuietStartDays: no ordinary external outflow in the first days of the
	// timeline, while a rules engine has no balance history to compare with.
	QuietStartDays int
}

// ChurnParams shapes the churners. Every churn date lies in
// [EarliestFraction × timeline, timeline − MinDaysAfter] (won-back
// customers excepted, they need room to come back) and every archetype
// shows leading indicators before it.
type ChurnParams struct {
	// Rate is the share of churners; Mix their archetype weights in the
	// order gradual_decline, sudden_drain, salary_moved,
	// complaint_then_leave, account_closure, churned_won_back.
	Rate float64
	Mix  [6]float64
	// SilentShare is the share of churners who leave with no warning sign
	// (archetype silent), drawn on a stream of its own so that the other
	// churners behave as without it.
	SilentShare float64

	EarliestFraction float64
	MinDaysAfter     int
	// DormantLoginActivity is the login rate of a dormant customer
	// relative to before.
	DormantLoginActivity float64

	// gradual_decline: activity × ((churn−d)/taper)^TaperExponent over a
	// taper of GradualTaperMinDays…MaxDays; salary stops at a random point
	// of the taper; churn date = last customer-initiated activity.
	GradualTaperMinDays, GradualTaperMaxDays int
	TaperExponent                            int

	// sudden_drain: the first external transfer of DrainFirstShareMin…Max
	// of every account goes DrainLeadMinDays…MaxDays before the churn
	// date, activity then runs at DrainAfterActivity; at the churn date the
	// rest goes but a residual of at most DrainResidualCents per account.
	DrainLeadMinDays, DrainLeadMaxDays       int
	DrainFirstShareMin, DrainFirstShareMax   float64
	DrainAfterActivity                       float64
	DrainResidualCents                       int64
	DrainSecondRate                          float64
	DrainSecondShareMin, DrainSecondShareMax float64

	// salary_moved: activity tapers from 1 to SalaryMovedFloor over
	// SalaryMovedTaperMinDays…MaxDays before the churn date (the last
	// salary); the last SalaryMovedForwards salaries are forwarded
	// (SalaryForwardShareMin…Max) to the new bank the next day; after the
	// churn date activity fades to nothing over SalaryMovedFadeMin…MaxDays.
	SalaryMovedTaperMinDays, SalaryMovedTaperMaxDays int
	SalaryMovedFloor                                 float64
	SalaryMovedForwards                              int
	SalaryForwardShareMin, SalaryForwardShareMax     float64
	SalaryMovedFadeMinDays, SalaryMovedFadeMaxDays   int

	// complaint_then_leave: 1…ComplaintMax complaints starting
	// ComplaintLeadMinDays…MaxDays before the churn date, at least one with
	// sentiment in StrongSentimentMin…Max (≤ −0.6; the first one with
	// probability StrongFirstRate), the others in
	// OtherSentimentMin…Max; activity then ComplaintAfterActivity; at the
	// churn date ComplaintOutflowShareMin…Max of every account leaves.
	ComplaintLeadMinDays, ComplaintLeadMaxDays         int
	ComplaintMax                                       int
	StrongSentimentMin, StrongSentimentMax             float64
	StrongFirstRate                                    float64
	OtherSentimentMin, OtherSentimentMax               float64
	ComplaintAfterActivity                             float64
	ComplaintOutflowShareMin, ComplaintOutflowShareMax float64

	// account_closure: PRODUCT_CANCELLED ClosureCancelLeadMinDays…MaxDays
	// before the churn date, a first move of ClosureMoveShareMin…Max of
	// the balance ClosureMoveLeadMinDays… before it, activity then
	// ClosureAfterActivity; at the churn date every account is emptied to
	// the new bank and closed (ACCOUNT_CLOSED).
	ClosureCancelLeadMinDays, ClosureCancelLeadMaxDays int
	ClosureMoveLeadMinDays                             int
	ClosureMoveShareMin, ClosureMoveShareMax           float64
	ClosureAfterActivity                               float64

	// churned_won_back: a gradual decline over WonBackTaperMinDays…MaxDays,
	// dormant WonBackDormantMinDays…MaxDays, then back (a transfer in from
	// the other bank, activity ramping up over WonBackRampDays, salary back
	// for WonBackSalaryRate of the salaried). Needs WonBackMinTailDays of
	// timeline after the return; where the timeline is too short the
	// customer becomes a gradual_decline.
	WonBackTaperMinDays, WonBackTaperMaxDays     int
	WonBackDormantMinDays, WonBackDormantMaxDays int
	WonBackMinTailDays                           int
	WonBackRampDays                              int
	WonBackSalaryRate                            float64
}

// DefaultParams returns the tuned defaults.
func DefaultParams() Params {
	return Params{
		TierMix: [4]float64{0.05, 0.20, 0.55, 0.20},
		Tiers: [4]TierParams{
			tierHNW: {
				IncomeMinCents: 900_000, IncomeMaxCents: 3_000_000,
				SavingsMonthsMin: 8, SavingsMonthsMax: 36,
				CardPerMonth: 30, ATMPerMonth: 2, DepositPerMonth: 0.3, LoginPerMonth: 12,
				MiscOutPerMonth: 1.2, MiscInPerMonth: 0.8,
				MonthlyFeeCents:   1500,
				SecondAccountRate: 0.95, ThirdAccountRate: 0.7,
				OutflowAmountCents: 10_000_000,
			},
			tierPotential: {
				IncomeMinCents: 400_000, IncomeMaxCents: 800_000,
				SavingsMonthsMin: 3, SavingsMonthsMax: 12,
				CardPerMonth: 25, ATMPerMonth: 3, DepositPerMonth: 0.3, LoginPerMonth: 10,
				MiscOutPerMonth: 1, MiscInPerMonth: 0.6,
				MonthlyFeeCents:   790,
				SecondAccountRate: 0.8, ThirdAccountRate: 0.35,
				OutflowAmountCents: 2_000_000,
			},
			tierMass: {
				IncomeMinCents: 190_000, IncomeMaxCents: 380_000,
				SavingsMonthsMin: 1.5, SavingsMonthsMax: 6,
				CardPerMonth: 20, ATMPerMonth: 4, DepositPerMonth: 0.4, LoginPerMonth: 7,
				MiscOutPerMonth: 0.8, MiscInPerMonth: 0.5,
				MonthlyFeeCents:   490,
				SecondAccountRate: 0.6, ThirdAccountRate: 0.15,
				OutflowAmountCents: 1_000_000,
			},
			tierBasic: {
				IncomeMinCents: 110_000, IncomeMaxCents: 190_000,
				SavingsMonthsMin: 1, SavingsMonthsMax: 3,
				CardPerMonth: 13, ATMPerMonth: 5, DepositPerMonth: 0.6, LoginPerMonth: 4,
				MiscOutPerMonth: 0.5, MiscInPerMonth: 0.4,
				MonthlyFeeCents:   250,
				SecondAccountRate: 0.35, ThirdAccountRate: 0.05,
				OutflowAmountCents: 500_000,
			},
		},
		CustomersPerManager:     150,
		ManagersPerBranch:       4,
		UnassignedRate:          0.03,
		SalaryRate:              0.85,
		PensionRate:             0.6,
		SalaryDayJitter:         1,
		BonusRate:               0.3,
		SpendMin:                0.82,
		SpendMax:                0.97,
		ActivityMin:             0.75,
		ActivityMax:             1.35,
		WeeklyNoise:             0.1,
		RentRate:                0.4,
		RentShareMin:            0.18,
		RentShareMax:            0.28,
		ExternalSavingsRate:     0.15,
		ExternalSavingsShareMin: 0.04,
		ExternalSavingsShareMax: 0.12,
		NewAccountRate:          0.05,
		Noise: NoiseParams{
			MonthFactorMin: 0.9, MonthFactorMax: 1.15,
			BusyMonthRate: 0.04, BusyMonthFactor: 1.3,
			HolidayRate:    0.75,
			HolidayMinDays: 14, HolidayMaxDays: 28,
			HolidayActivityMin: 0.7, HolidayActivityMax: 0.85,
			HolidaySummerShare: 0.6,
			LongAbsenceRate:    0.01,
			LongAbsenceMinDays: 35, LongAbsenceMaxDays: 60,
			LongAbsenceActivity:  0.15,
			BigPurchaseRate:      0.3,
			BigPurchaseIncomeMin: 0.3, BigPurchaseIncomeMax: 1.2,
			OccasionalExternalRate: 0.25,
			OccasionalIncomeMin:    0.5, OccasionalIncomeMax: 3,
			LateSalaryRate:    0.2,
			LateSalaryMinDays: 5, LateSalaryMaxDays: 7,
			MildComplaintRate: 0.08,
			MildSentimentMin:  -0.5, MildSentimentMax: -0.05,
			ExternalShareCap: 0.35,
			ExternalTierCap:  0.8,
			QuietStartDays:   30,
		},
		Churn: ChurnParams{
			Rate:                 0.15,
			SilentShare:          0.15,
			Mix:                  [6]float64{0.25, 0.15, 0.2, 0.15, 0.15, 0.1},
			EarliestFraction:     0.5,
			MinDaysAfter:         61,
			DormantLoginActivity: 0.1,

			GradualTaperMinDays: 60, GradualTaperMaxDays: 120,
			TaperExponent: 2,

			DrainLeadMinDays: 21, DrainLeadMaxDays: 45,
			DrainFirstShareMin: 0.55, DrainFirstShareMax: 0.8,
			DrainAfterActivity:  0.4,
			DrainResidualCents:  3000,
			DrainSecondRate:     0.5,
			DrainSecondShareMin: 0.3, DrainSecondShareMax: 0.6,

			SalaryMovedTaperMinDays: 75, SalaryMovedTaperMaxDays: 110,
			SalaryMovedFloor:      0.2,
			SalaryMovedForwards:   2,
			SalaryForwardShareMin: 0.7, SalaryForwardShareMax: 0.9,
			SalaryMovedFadeMinDays: 20, SalaryMovedFadeMaxDays: 50,

			ComplaintLeadMinDays: 28, ComplaintLeadMaxDays: 48,
			ComplaintMax:       3,
			StrongSentimentMin: -0.95, StrongSentimentMax: -0.6,
			StrongFirstRate:   0.7,
			OtherSentimentMin: -0.7, OtherSentimentMax: -0.2,
			ComplaintAfterActivity:   0.5,
			ComplaintOutflowShareMin: 0.7, ComplaintOutflowShareMax: 0.95,

			ClosureCancelLeadMinDays: 21, ClosureCancelLeadMaxDays: 50,
			ClosureMoveLeadMinDays: 3,
			ClosureMoveShareMin:    0.4, ClosureMoveShareMax: 0.7,
			ClosureAfterActivity: 0.5,

			WonBackTaperMinDays: 60, WonBackTaperMaxDays: 100,
			WonBackDormantMinDays: 183, WonBackDormantMaxDays: 240,
			WonBackMinTailDays: 21,
			WonBackRampDays:    14,
			WonBackSalaryRate:  0.6,
		},
	}
}
