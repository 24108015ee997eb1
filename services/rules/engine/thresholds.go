package engine

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/churnwatch/churnwatch/services/platform/money"
)

// Decimal is a non-float decimal with four fractional digits, stored as the
// value × 10⁴: ratios, shares, sentiment floors and amounts in major units.
type Decimal int64

// DecimalScale is the number of fractional digits of a Decimal.
const DecimalScale = 4

const decimalOne = 10000

// ParseDecimal parses "0.5", "-0.60" or "10000" into a Decimal.
func ParseDecimal(s string) (Decimal, error) {
	v, err := money.ParseScaled(strings.TrimSpace(s), DecimalScale)
	return Decimal(v), err
}

// String renders d with at least two fractional digits and no trailing
// zeros beyond them: 0.5 → "0.50", 0.555 → "0.555".
func (d Decimal) String() string { return formatDecimal(int64(d), 2) }

// formatDecimal renders v/10⁴ trimming trailing zeros down to minFrac digits.
func formatDecimal(v int64, minFrac int) string {
	s := money.FormatScaled(v, DecimalScale)
	cut := len(s)
	dot := strings.IndexByte(s, '.')
	for cut > dot+1+minFrac && s[cut-1] == '0' {
		cut--
	}
	if cut == dot+1 {
		cut = dot
	}
	return s[:cut]
}

// TierThresholds holds every threshold of SPEC §4 for one tier. Day counts
// are whole days of event time; Decimal amounts are major units of the
// event's currency.
type TierThresholds struct {
	DecliningDays int64 // dormancy.declining.days
	ChurnedDays   int64 // dormancy.churned.days

	DropRatio          Decimal // activity.drop.ratio
	DropP              Decimal // activity.drop.p: the Poisson lower tail at or under which the count is unlikely
	DropMinBaseline    Decimal // activity.drop.min_baseline, transactions per 30 days
	DropMinHistoryDays int64   // activity.drop.min_history_days
	// DropConfirmDays is activity.drop.confirm_days: how many days the drop
	// must still hold (last 30 days ≤ ratio × average) after it is first
	// seen before it fires; 0 fires at once. A holiday that ends within the
	// wait raises nothing.
	DropConfirmDays int64

	LargeAmount    Decimal // outflow.large.amount
	LargeShare     Decimal // outflow.large.share of the balance before the outflow
	LargeMinAmount Decimal // outflow.large.min_amount for the share test

	DrainShare          Decimal // outflow.drain.share of the average end-of-day balance
	DrainMinHistoryDays int64   // outflow.drain.min_history_days of known balance in the 90-day baseline

	SalaryDays         int64 // salary.stopped.days without a salary credit
	SalaryMinCredits   int64 // salary.stopped.min_credits
	SalaryLookbackDays int64 // salary.stopped.lookback_days before the last credit

	ComplaintCount          int64   // complaints.count within 30 days
	ComplaintSentimentFloor Decimal // complaints.sentiment_floor
}

// Thresholds is one versioned threshold set, one TierThresholds per tier.
// Version is managed by the caller (the rules service bumps it on every
// accepted update); Set never changes it.
//
// Amounts (outflow.large.amount and .min_amount) in Tiers are in
// DefaultCurrency. Other currencies may have their own amounts per tier
// (keys "outflow.large.amount.MASS.CZK", or "outflow.large.amount.CZK" for
// every tier); an event in a currency without its own amount is judged
// against the default currency's number, as before per-currency amounts
// existed, and its explanation says so. Fixed-size arrays keep Thresholds
// a comparable value that copies without sharing.
type Thresholds struct {
	Version         int64
	Tiers           [numTiers]TierThresholds
	DefaultCurrency string // currency.default; ISO 4217, default EUR
	Currencies      [MaxCurrencies]CurrencyAmounts
}

// MaxCurrencies bounds the currencies with amounts of their own.
const MaxCurrencies = 8

// CurrencyAmounts are one currency's own amounts; unsetAmount = not set
// for that tier.
type CurrencyAmounts struct {
	Currency       string // "" = a free slot
	LargeAmount    [numTiers]Decimal
	LargeMinAmount [numTiers]Decimal
}

const unsetAmount Decimal = -1

// defaultCurrencyKey names the currency of the amounts without a currency.
const defaultCurrencyKey = "currency.default"

// DefaultThresholds returns the SPEC §4 defaults as version 1.
func DefaultThresholds() Thresholds {
	base := TierThresholds{
		DecliningDays:           90,
		ChurnedDays:             180,
		DropRatio:               5000,
		DropP:                   100,
		DropMinBaseline:         4 * decimalOne,
		DropMinHistoryDays:      90,
		DropConfirmDays:         0,
		LargeShare:              5000,
		LargeMinAmount:          1000 * decimalOne,
		DrainShare:              6000,
		DrainMinHistoryDays:     30,
		SalaryDays:              45,
		SalaryMinCredits:        3,
		SalaryLookbackDays:      120,
		ComplaintCount:          2,
		ComplaintSentimentFloor: -6000,
	}
	th := Thresholds{Version: 1, DefaultCurrency: "EUR"}
	for i, amount := range [numTiers]int64{100000, 20000, 10000, 5000} {
		th.Tiers[i] = base
		th.Tiers[i].LargeAmount = Decimal(amount * decimalOne)
	}
	return th
}

type fieldKind int

const (
	kindDays fieldKind = iota
	kindCount
	kindRatio // Decimal, shown with ≥ 2 decimals
	kindPlain // Decimal shown without trailing zeros: amounts, counts per period
)

// thresholdField describes one settable field; min and max are inclusive
// and in the stored unit (Decimal fields ×10⁴).
type thresholdField struct {
	rule, name string
	kind       fieldKind
	min, max   int64
	ptr        func(*TierThresholds) *int64
	// cur points at the same field of a currency's own amounts; nil for
	// fields that are not amounts.
	cur func(*CurrencyAmounts) *[numTiers]Decimal
}

// limits that keep State bounded: windows the state must retain.
const (
	maxDormancyDays    = 3650
	maxSalaryDays      = 366
	maxSalaryCredits   = 16
	maxComplaintCount  = 16
	maxAmountMajor     = 100_000_000_000 // keeps amount × 10^exponent inside int64
	drainBaselineDays  = 90
	dropWindowDays     = 30
	dropBaselineDays   = 180
	maxDropConfirmDays = 30
	drainWindowDays    = 7
	complaintWindowDay = 30
)

var thresholdFields = []thresholdField{
	{RuleDormancyDeclining, "days", kindDays, 1, maxDormancyDays, func(t *TierThresholds) *int64 { return &t.DecliningDays }, nil},
	{RuleDormancyChurned, "days", kindDays, 1, maxDormancyDays, func(t *TierThresholds) *int64 { return &t.ChurnedDays }, nil},
	{RuleActivityDrop, "ratio", kindRatio, 1, decimalOne, func(t *TierThresholds) *int64 { return (*int64)(&t.DropRatio) }, nil},
	{RuleActivityDrop, "p", kindRatio, 1, decimalOne, func(t *TierThresholds) *int64 { return (*int64)(&t.DropP) }, nil},
	{RuleActivityDrop, "min_baseline", kindPlain, 1, 1000 * decimalOne, func(t *TierThresholds) *int64 { return (*int64)(&t.DropMinBaseline) }, nil},
	{RuleActivityDrop, "min_history_days", kindDays, dropWindowDays + 1, maxDormancyDays, func(t *TierThresholds) *int64 { return &t.DropMinHistoryDays }, nil},
	{RuleActivityDrop, "confirm_days", kindDays, 0, maxDropConfirmDays, func(t *TierThresholds) *int64 { return &t.DropConfirmDays }, nil},
	{RuleOutflowLarge, "amount", kindPlain, 1, maxAmountMajor * decimalOne, func(t *TierThresholds) *int64 { return (*int64)(&t.LargeAmount) },
		func(c *CurrencyAmounts) *[numTiers]Decimal { return &c.LargeAmount }},
	{RuleOutflowLarge, "share", kindRatio, 1, decimalOne, func(t *TierThresholds) *int64 { return (*int64)(&t.LargeShare) }, nil},
	{RuleOutflowLarge, "min_amount", kindPlain, 0, maxAmountMajor * decimalOne, func(t *TierThresholds) *int64 { return (*int64)(&t.LargeMinAmount) },
		func(c *CurrencyAmounts) *[numTiers]Decimal { return &c.LargeMinAmount }},
	{RuleOutflowDrain, "share", kindRatio, 1, 100 * decimalOne, func(t *TierThresholds) *int64 { return (*int64)(&t.DrainShare) }, nil},
	{RuleOutflowDrain, "min_history_days", kindDays, 1, drainBaselineDays, func(t *TierThresholds) *int64 { return &t.DrainMinHistoryDays }, nil},
	{RuleSalaryStopped, "days", kindDays, 1, maxSalaryDays, func(t *TierThresholds) *int64 { return &t.SalaryDays }, nil},
	{RuleSalaryStopped, "min_credits", kindCount, 1, maxSalaryCredits, func(t *TierThresholds) *int64 { return &t.SalaryMinCredits }, nil},
	{RuleSalaryStopped, "lookback_days", kindDays, 1, maxSalaryDays, func(t *TierThresholds) *int64 { return &t.SalaryLookbackDays }, nil},
	{RuleComplaints, "count", kindCount, 1, maxComplaintCount, func(t *TierThresholds) *int64 { return &t.ComplaintCount }, nil},
	{RuleComplaints, "sentiment_floor", kindRatio, -decimalOne, decimalOne, func(t *TierThresholds) *int64 { return (*int64)(&t.ComplaintSentimentFloor) }, nil},
}

func (f *thresholdField) key() string { return f.rule + "." + f.name }

func (f *thresholdField) format(v int64) string {
	switch f.kind {
	case kindDays, kindCount:
		return strconv.FormatInt(v, 10)
	case kindPlain:
		return formatDecimal(v, 0)
	}
	return formatDecimal(v, 2)
}

func (f *thresholdField) parse(s string) (int64, error) {
	var v int64
	var err error
	switch f.kind {
	case kindDays, kindCount:
		v, err = strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	default:
		var d Decimal
		d, err = ParseDecimal(s)
		v = int64(d)
	}
	if err != nil {
		return 0, fmt.Errorf("%w for %s: %q: %v", ErrBadValue, f.key(), s, err)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%w: %s=%s, allowed %s … %s", ErrOutOfRange, f.key(), s, f.format(f.min), f.format(f.max))
	}
	return v, nil
}

// resolveKey splits "RULE.FIELD", "RULE.FIELD.TIER", "RULE.FIELD.TIER.CUR"
// or "RULE.FIELD.CUR" into the field, the tier (-1 = every tier) and the
// currency ("" = the default currency's amounts in Tiers).
func resolveKey(key string) (*thresholdField, Tier, string, error) {
	key = strings.TrimSpace(key)
	for i := range thresholdFields {
		f := &thresholdFields[i]
		k := f.key()
		if key == k {
			return f, -1, "", nil
		}
		rest, ok := strings.CutPrefix(key, k+".")
		if !ok {
			continue
		}
		tierName, cur, hasCur := strings.Cut(rest, ".")
		tier, err := ParseTier(tierName)
		if err != nil && !hasCur && f.cur != nil && looksLikeCurrency(rest) {
			tier, cur, hasCur, err = -1, rest, true, nil
		}
		if err != nil {
			return nil, 0, "", fmt.Errorf("threshold key %q: %w", key, err)
		}
		if hasCur {
			if f.cur == nil {
				return nil, 0, "", fmt.Errorf("%w %q: only amounts (outflow.large.amount, outflow.large.min_amount) are set per currency", ErrUnknownKey, key)
			}
			if !money.KnownCurrency(cur) {
				return nil, 0, "", fmt.Errorf("%w %q: %q is not an ISO 4217 currency code", ErrUnknownKey, key, cur)
			}
		}
		return f, tier, cur, nil
	}
	return nil, 0, "", fmt.Errorf("%w %q", ErrUnknownKey, key)
}

func looksLikeCurrency(s string) bool {
	return len(s) == 3 && strings.ToUpper(s) == s && money.KnownCurrency(s)
}

// slot returns the own amounts of currency cur, adding a slot when add.
func (t *Thresholds) slot(cur string, add bool) (*CurrencyAmounts, error) {
	for i := range t.Currencies {
		if t.Currencies[i].Currency == cur {
			return &t.Currencies[i], nil
		}
	}
	if !add {
		return nil, nil
	}
	for i := range t.Currencies {
		if c := &t.Currencies[i]; c.Currency == "" {
			c.Currency = cur
			for tier := range c.LargeAmount {
				c.LargeAmount[tier], c.LargeMinAmount[tier] = unsetAmount, unsetAmount
			}
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: at most %d currencies may have amounts of their own", ErrOutOfRange, MaxCurrencies)
}

// Set sets one threshold from its text form. key is "RULE.FIELD" for every
// tier or "RULE.FIELD.TIER" for one, e.g. "outflow.large.amount.MASS" with
// value "5000", or "dormancy.declining.days" with "60". Range errors are
// reported here; rules that tie fields together are checked by Validate.
func (t *Thresholds) Set(key, value string) error {
	if strings.TrimSpace(key) == defaultCurrencyKey {
		cur := strings.TrimSpace(value)
		if !money.KnownCurrency(cur) {
			return fmt.Errorf("%w for %s: %q is not an ISO 4217 currency code", ErrBadValue, defaultCurrencyKey, value)
		}
		t.DefaultCurrency = cur
		return nil
	}
	f, tier, cur, err := resolveKey(key)
	if err != nil {
		return err
	}
	v, err := f.parse(value)
	if err != nil {
		return err
	}
	if cur != "" && cur != t.defaultCurrency() {
		c, err := t.slot(cur, true)
		if err != nil {
			return err
		}
		for i := range c.LargeAmount {
			if tier < 0 || Tier(i) == tier {
				f.cur(c)[i] = Decimal(v)
			}
		}
		return nil
	}
	for i := range t.Tiers {
		if tier < 0 || Tier(i) == tier {
			*f.ptr(&t.Tiers[i]) = v
		}
	}
	return nil
}

func (t *Thresholds) defaultCurrency() string {
	if t.DefaultCurrency == "" {
		return "EUR"
	}
	return t.DefaultCurrency
}

// Get returns the text form of one threshold. A key without a tier works
// only while every tier holds the same value.
func (t *Thresholds) Get(key string) (string, error) {
	if strings.TrimSpace(key) == defaultCurrencyKey {
		return t.defaultCurrency(), nil
	}
	f, tier, cur, err := resolveKey(key)
	if err != nil {
		return "", err
	}
	val := func(i Tier) (int64, error) { return *f.ptr(&t.Tiers[i]), nil }
	if cur != "" && cur != t.defaultCurrency() {
		c, _ := t.slot(cur, false)
		val = func(i Tier) (int64, error) {
			if c == nil || f.cur(c)[i] == unsetAmount {
				return 0, fmt.Errorf("%w: %s has no %s amount for %s (the %s amount applies)", ErrUnknownKey, f.key(), cur, i, t.defaultCurrency())
			}
			return int64(f.cur(c)[i]), nil
		}
	}
	if tier >= 0 {
		v, err := val(tier)
		if err != nil {
			return "", err
		}
		return f.format(v), nil
	}
	v, err := val(0)
	if err != nil {
		return "", err
	}
	for i := Tier(1); i < numTiers; i++ {
		w, err := val(i)
		if err != nil {
			return "", err
		}
		if w != v {
			return "", fmt.Errorf("%w: %s differs per tier, name one (e.g. %s.%s)", ErrUnknownKey, f.key(), f.key(), TierMass)
		}
	}
	return f.format(v), nil
}

// Keys returns every settable "RULE.FIELD.TIER" key, sorted, so audits can
// diff two threshold sets key by key.
func (t Thresholds) Keys() []string {
	keys := make([]string, 0, len(thresholdFields)*int(numTiers)+1)
	keys = append(keys, defaultCurrencyKey)
	for i := range thresholdFields {
		f := &thresholdFields[i]
		for tier := TierHNW; tier < numTiers; tier++ {
			keys = append(keys, f.key()+"."+tier.String())
			if f.cur == nil {
				continue
			}
			for c := range t.Currencies {
				if ca := &t.Currencies[c]; ca.Currency != "" && f.cur(ca)[tier] != unsetAmount {
					keys = append(keys, f.key()+"."+tier.String()+"."+ca.Currency)
				}
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// Validate checks every field's range and the rules between fields: a
// customer must turn declining before churned.
func (t *Thresholds) Validate() error {
	for c := range t.Currencies {
		if cur := t.Currencies[c].Currency; cur != "" && cur == t.defaultCurrency() {
			return fmt.Errorf("%w: %s has amounts of its own but is %s: set its amounts without the currency suffix", ErrOutOfRange, cur, defaultCurrencyKey)
		}
	}
	for tier := TierHNW; tier < numTiers; tier++ {
		tt := &t.Tiers[tier]
		for i := range thresholdFields {
			f := &thresholdFields[i]
			if v := *f.ptr(tt); v < f.min || v > f.max {
				return fmt.Errorf("%w: %s.%s=%s, allowed %s … %s", ErrOutOfRange, f.key(), tier, f.format(v), f.format(f.min), f.format(f.max))
			}
		}
		for c := range t.Currencies {
			ca := &t.Currencies[c]
			if ca.Currency == "" {
				continue
			}
			for i := range thresholdFields {
				f := &thresholdFields[i]
				if f.cur == nil {
					continue
				}
				if v := int64(f.cur(ca)[tier]); v != int64(unsetAmount) && (v < f.min || v > f.max) {
					return fmt.Errorf("%w: %s.%s.%s=%s, allowed %s … %s", ErrOutOfRange, f.key(), tier, ca.Currency, f.format(v), f.format(f.min), f.format(f.max))
				}
			}
		}
		if tt.ChurnedDays <= tt.DecliningDays {
			return fmt.Errorf("%w: %s.days.%s (%d) must exceed %s.days.%s (%d)", ErrOutOfRange,
				RuleDormancyChurned, tier, tt.ChurnedDays, RuleDormancyDeclining, tier, tt.DecliningDays)
		}
	}
	return nil
}

// amounts returns the large-outflow amount and share-test minimum for a
// tier in a currency, and whether that currency has amounts of its own
// (false: the default currency's numbers apply).
func (t *Thresholds) amounts(tier Tier, cur string) (large, minAmount Decimal, own bool) {
	tt := &t.Tiers[tier]
	large, minAmount = tt.LargeAmount, tt.LargeMinAmount
	if cur == "" || cur == t.defaultCurrency() {
		return large, minAmount, true
	}
	for i := range t.Currencies {
		if c := &t.Currencies[i]; c.Currency == cur {
			if v := c.LargeAmount[tier]; v != unsetAmount {
				large, own = v, true
			}
			if v := c.LargeMinAmount[tier]; v != unsetAmount {
				minAmount, own = v, true
			}
			return large, minAmount, own
		}
	}
	return large, minAmount, false
}

// forTier returns the thresholds that apply to a profile: unknown customers
// are scored as MASS.
func (t *Thresholds) forTier(p Profile) (*TierThresholds, Tier) {
	tier := p.Tier
	if !p.Known || tier < 0 || tier >= numTiers {
		tier = TierMass
	}
	return &t.Tiers[tier], tier
}
