package simulate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	defaultStart  = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	customerIDRe  = regexp.MustCompile(`^C\d{6}$`)
	displayNameRe = regexp.MustCompile(`^\p{L}+ [A-Z]\.$`)
	branchIDRe    = regexp.MustCompile(`^br-\d{2}$`)
	managerIDRe   = regexp.MustCompile(`^rm-\d{3}$`)
)

// population is one bank of 2000 customers over 12 months, shared by the
// tests that inspect events, with its events grouped per customer.
var population = sync.OnceValues(func() (*fixture, error) {
	b, err := Generate(Config{Customers: 2000, Months: 12, Seed: 42})
	if err != nil {
		return nil, err
	}
	f := &fixture{Bank: b, byCustomer: map[string][]int32{}, tier: map[string]string{}}
	for i, e := range b.Events {
		f.byCustomer[e.CustomerID] = append(f.byCustomer[e.CustomerID], int32(i))
	}
	for _, c := range b.Customers {
		f.tier[c.CustomerID] = c.Tier
	}
	return f, nil
})

type fixture struct {
	*Bank
	byCustomer map[string][]int32 // indexes into Events
	tier       map[string]string
}

// eventsOf returns the events of one customer in order.
func (f *fixture) eventsOf(id string) []Event {
	idx := f.byCustomer[id]
	out := make([]Event, len(idx))
	for i, j := range idx {
		out[i] = f.Events[j]
	}
	return out
}

func loadPopulation(t *testing.T) *fixture {
	t.Helper()
	f, err := population()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// dayIndex returns the day of an occurredAt or date relative to 2025-01-01.
func dayIndex(t *testing.T, s string) int {
	t.Helper()
	d, err := time.Parse(time.DateOnly, s[:10])
	if err != nil {
		t.Fatal(err)
	}
	return int(d.Sub(defaultStart).Hours() / 24)
}

func isExternalOut(e Event) bool {
	return e.Type == TypeTransferOut && e.CounterpartyBank != "" && e.CounterpartyBank != "HOME"
}

func TestSameConfigGivesIdenticalFiles(t *testing.T) {
	cfg := Config{Customers: 150, Months: 12, Seed: 7}
	write := func(cfg Config) string {
		b, err := Generate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := b.WriteDir(dir); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	read := func(dir, name string) []byte {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	a, b := write(cfg), write(cfg)
	for _, name := range []string{"customers.ndjson", "events.ndjson", "labels.ndjson"} {
		if !bytes.Equal(read(a, name), read(b, name)) {
			t.Errorf("%s differs between two runs of the same config", name)
		}
		if len(read(a, name)) == 0 {
			t.Errorf("%s is empty", name)
		}
	}
	cfg.Seed = 8
	c := write(cfg)
	for _, name := range []string{"customers.ndjson", "events.ndjson", "labels.ndjson"} {
		if bytes.Equal(read(a, name), read(c, name)) {
			t.Errorf("%s is the same for seeds 7 and 8", name)
		}
	}
}

func TestStreamEventsMatchesGenerate(t *testing.T) {
	cfg := Config{Customers: 120, Months: 8, Seed: 3}
	b, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var streamed []Event
	if err := StreamEvents(cfg, func(e Event) error {
		streamed = append(streamed, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(streamed, b.Events) {
		t.Fatalf("StreamEvents gave %d events, Generate %d, or they differ", len(streamed), len(b.Events))
	}
	customers, labels, err := Roster(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(customers, b.Customers) || !reflect.DeepEqual(labels, b.Labels) {
		t.Fatal("Roster differs from Generate")
	}
}

func TestStreamEventsStopsAtFirstError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := StreamEvents(Config{Customers: 20, Months: 2, Seed: 1}, func(Event) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 {
		t.Fatalf("err %v after %d events, want stop after 10", err, n)
	}
}

func TestCustomerHistoryDoesNotDependOnPopulationSize(t *testing.T) {
	small, err := Generate(Config{Customers: 30, Months: 6, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	large, err := Generate(Config{Customers: 90, Months: 6, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	of := func(b *Bank, id string) []Event {
		var out []Event
		for _, e := range b.Events {
			if e.CustomerID == id {
				out = append(out, e)
			}
		}
		return out
	}
	for _, id := range []string{"C000001", "C000017", "C000030"} {
		a, b := of(small, id), of(large, id)
		if len(a) == 0 || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: %d events with 30 customers, %d with 90, or they differ", id, len(a), len(b))
		}
	}
}

func TestPopulationMix(t *testing.T) {
	const n = 2000
	customers, labels, err := Roster(Config{Customers: n, Months: 12, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{TierHighNetWorth: 0.05, TierPotential: 0.20, TierMass: 0.55, TierBasic: 0.20}
	tiers := map[string]int{}
	unassigned := 0
	branchOf := map[string]string{}
	managersOfBranch := map[string]map[string]bool{}
	ids := map[string]bool{}
	for _, c := range customers {
		tiers[c.Tier]++
		if !customerIDRe.MatchString(c.CustomerID) || ids[c.CustomerID] {
			t.Errorf("customer id %q malformed or repeated", c.CustomerID)
		}
		ids[c.CustomerID] = true
		if !displayNameRe.MatchString(c.DisplayName) {
			t.Errorf("display name %q", c.DisplayName)
		}
		if !branchIDRe.MatchString(c.BranchID) {
			t.Errorf("branch %q", c.BranchID)
		}
		if c.ManagerID == "" {
			unassigned++
			continue
		}
		if !managerIDRe.MatchString(c.ManagerID) {
			t.Errorf("manager %q", c.ManagerID)
		}
		if b, ok := branchOf[c.ManagerID]; ok && b != c.BranchID {
			t.Errorf("manager %s in branches %s and %s", c.ManagerID, b, c.BranchID)
		}
		branchOf[c.ManagerID] = c.BranchID
		if managersOfBranch[c.BranchID] == nil {
			managersOfBranch[c.BranchID] = map[string]bool{}
		}
		managersOfBranch[c.BranchID][c.ManagerID] = true
	}
	for tier, share := range want {
		if got := float64(tiers[tier]) / n; math.Abs(got-share) > 0.025 {
			t.Errorf("tier %s: %.3f of customers, want %.2f ± 0.025", tier, got, share)
		}
	}
	if len(tiers) != 4 {
		t.Errorf("tiers %v", tiers)
	}
	if got := float64(unassigned) / n; got < 0.015 || got > 0.05 {
		t.Errorf("%.3f of customers unassigned, want about 0.03", got)
	}
	if len(branchOf) != 13 {
		t.Errorf("%d managers for %d customers, want 13 (one per 150)", len(branchOf), n)
	}
	for b, ms := range managersOfBranch {
		if len(ms) > 4 {
			t.Errorf("branch %s has %d managers", b, len(ms))
		}
	}

	churned := 0
	archetypes := map[string]int{}
	for i, l := range labels {
		if l.CustomerID != customers[i].CustomerID {
			t.Fatalf("label %d is for %s, customer is %s", i, l.CustomerID, customers[i].CustomerID)
		}
		archetypes[l.Archetype]++
		if l.Churned != (l.Archetype != ArchetypeStable) || l.Churned != (l.ChurnDate != "") {
			t.Errorf("label %+v inconsistent", l)
		}
		if l.Churned {
			churned++
		}
	}
	if got := float64(churned) / n; got < 0.125 || got > 0.175 {
		t.Errorf("%.3f churners, want about 0.15", got)
	}
	for _, a := range []string{ArchetypeGradualDecline, ArchetypeSuddenDrain, ArchetypeSalaryMoved,
		ArchetypeComplaintThenLeave, ArchetypeAccountClosure, ArchetypeChurnedWonBack} {
		if archetypes[a] < 10 {
			t.Errorf("archetype %s: %d customers, want at least 10 of %d", a, archetypes[a], n)
		}
	}
}

func TestChurnersAreSpreadOverTiers(t *testing.T) {
	customers, labels, err := Roster(Config{Customers: 2000, Months: 12, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	churned, total := map[string]int{}, map[string]int{}
	for i, c := range customers {
		total[c.Tier]++
		if labels[i].Churned {
			churned[c.Tier]++
		}
	}
	for tier, n := range total {
		if rate := float64(churned[tier]) / float64(n); rate < 0.05 || rate > 0.3 {
			t.Errorf("tier %s churn rate %.2f", tier, rate)
		}
	}
}

func TestChurnDatesLeaveHistoryAndAftermath(t *testing.T) {
	f := loadPopulation(t)
	const days = 365
	for _, l := range f.Labels {
		if !l.Churned {
			continue
		}
		d := dayIndex(t, l.ChurnDate)
		switch l.Archetype {
		case ArchetypeChurnedWonBack:
			if d < 90 || d > days-1-183-21 {
				t.Errorf("%s won back, churn day %d leaves no room for 6 months of dormancy and a return", l.CustomerID, d)
			}
		default:
			if d < days/2 || d > days-1-61 {
				t.Errorf("%s (%s) churn day %d not in the second half with 2 months after", l.CustomerID, l.Archetype, d)
			}
		}
	}
}

func TestEveryEventIsValidAndOrdered(t *testing.T) {
	f := loadPopulation(t)
	end := defaultStart.AddDate(0, 12, 0)
	seen := make(map[string]bool, len(f.Events))
	for i, e := range f.Events {
		if err := validateEvent(e, "EUR", 2, defaultStart, end); err != nil {
			t.Fatalf("event %d %+v: %v", i, e, err)
		}
		if seen[e.EventID] {
			t.Fatalf("event id %s repeated", e.EventID)
		}
		seen[e.EventID] = true
		if !strings.HasPrefix(e.AccountID, e.CustomerID+"-0") || !strings.HasPrefix(e.EventID, "e-"+e.CustomerID+"-") {
			t.Fatalf("event %+v: ids do not follow the customer", e)
		}
		if i > 0 {
			p := f.Events[i-1]
			if p.OccurredAt > e.OccurredAt || (p.OccurredAt == e.OccurredAt && p.EventID >= e.EventID) {
				t.Fatalf("events %d and %d out of order: %s %s, %s %s", i-1, i, p.OccurredAt, p.EventID, e.OccurredAt, e.EventID)
			}
		}
	}
	for _, c := range f.Customers {
		accounts := map[string]bool{}
		for _, e := range f.eventsOf(c.CustomerID) {
			accounts[e.AccountID] = true
		}
		if len(accounts) < 1 || len(accounts) > 3 {
			t.Errorf("%s has %d accounts", c.CustomerID, len(accounts))
		}
	}
}

func TestBalancesFollowTheMoneyAndStayPositive(t *testing.T) {
	f := loadPopulation(t)
	balance := map[string]int64{}
	for _, e := range f.Events {
		if !isMoney(e.Type) {
			continue
		}
		amount, _ := parseDecimal(e.Amount, 2)
		after, err := parseDecimal(e.BalanceAfter, 2)
		if err != nil {
			t.Fatalf("%s: negative or bad balance %q", e.EventID, e.BalanceAfter)
		}
		if before, ok := balance[e.AccountID]; ok {
			want := before + amount
			if moneyOut[e.Type] {
				want = before - amount
			}
			if after != want {
				t.Fatalf("%s %s %s: balance %s, want %d minor units", e.EventID, e.Type, e.Amount, e.BalanceAfter, want)
			}
		}
		balance[e.AccountID] = after
	}
}

func TestVolumeIsRealistic(t *testing.T) {
	f := loadPopulation(t)
	perMonth := float64(len(f.Events)) / float64(len(f.Customers)) / 12
	if perMonth < 20 || perMonth > 60 {
		t.Errorf("%.1f events per customer-month, want 20…60", perMonth)
	}
	types := map[string]int{}
	for _, e := range f.Events {
		types[e.Type]++
	}
	for _, typ := range []string{TypeDeposit, TypeTransferIn, TypeSalary, TypeWithdrawal, TypeTransferOut,
		TypeCardPayment, TypeInterest, TypeFee, TypeLogin, TypeAccountOpened, TypeAccountClosed,
		TypeProductCancelled, TypeComplaint} {
		if types[typ] == 0 {
			t.Errorf("no %s events", typ)
		}
	}
	// Card spending follows the week (more on Saturdays) and the year
	// (December up).
	weekday, month := map[time.Weekday]int{}, map[time.Month]int{}
	for _, e := range f.Events {
		if e.Type == TypeCardPayment {
			ts, _ := time.Parse(time.RFC3339, e.OccurredAt)
			weekday[ts.Weekday()]++
			month[ts.Month()]++
		}
	}
	if weekday[time.Saturday] < weekday[time.Tuesday]*5/4 {
		t.Errorf("card payments on Saturdays %d, Tuesdays %d: want a weekend peak", weekday[time.Saturday], weekday[time.Tuesday])
	}
	if month[time.December] < month[time.October]*11/10 {
		t.Errorf("card payments in December %d, October %d: want a December peak", month[time.December], month[time.October])
	}
}

// customerActivityDays returns the days of the customer's customer-initiated
// events.
func customerActivityDays(t *testing.T, events []Event) []int {
	var out []int
	for _, e := range events {
		if customerIni[e.Type] {
			out = append(out, dayIndex(t, e.OccurredAt))
		}
	}
	return out
}

func TestStableCustomersStayUnderTheRules(t *testing.T) {
	f := loadPopulation(t)
	tierAmount := map[string]int64{TierHighNetWorth: 10_000_000, TierPotential: 2_000_000, TierMass: 1_000_000, TierBasic: 500_000}
	holidays := 0
	stable := 0
	for _, l := range f.Labels {
		if l.Churned {
			continue
		}
		stable++
		events := f.eventsOf(l.CustomerID)
		last := -1
		for _, d := range customerActivityDays(t, events) {
			if d-last >= 90 {
				t.Errorf("stable %s: no activity from day %d to %d", l.CustomerID, last, d)
			}
			last = d
		}
		if 364-last >= 90 {
			t.Errorf("stable %s: no activity after day %d", l.CustomerID, last)
		}
		// No 30-day window of a stable customer falls to a third of its
		// usual activity (the noise stays well above activity.drop).
		counts := make([]int, 365)
		for _, d := range customerActivityDays(t, events) {
			counts[d]++
		}
		window, total, low := 0, 0, false
		for d := range 365 {
			window += counts[d]
			total += counts[d]
			if d >= 30 {
				window -= counts[d-30]
			}
			if d >= 120 && float64(window) < float64(total)/float64(d+1)*30/3 {
				low = true
			}
		}
		if low {
			holidays++
		}
		complaints := 0
		for _, e := range events {
			switch {
			case e.Type == TypeComplaint:
				complaints++
				if *e.Sentiment <= -0.6 {
					t.Errorf("stable %s: complaint with sentiment %v", l.CustomerID, *e.Sentiment)
				}
			case isExternalOut(e):
				amount, _ := parseDecimal(e.Amount, 2)
				after, _ := parseDecimal(e.BalanceAfter, 2)
				if amount >= tierAmount[f.tier[l.CustomerID]] || amount*2 >= amount+after {
					t.Errorf("stable %s: external outflow %s with %s left", l.CustomerID, e.Amount, e.BalanceAfter)
				}
			case e.Type == TypeAccountClosed || e.Type == TypeProductCancelled:
				t.Errorf("stable %s: %s", l.CustomerID, e.Type)
			}
		}
		if complaints > 1 {
			t.Errorf("stable %s: %d complaints", l.CustomerID, complaints)
		}
	}
	// Long absences are meant to be rare false alarms.
	if holidays > stable/50 {
		t.Errorf("%d of %d stable customers have a 30-day window under a third of their usual activity", holidays, stable)
	}
}

func TestArchetypesShowTheirShape(t *testing.T) {
	f := loadPopulation(t)
	for _, l := range f.Labels {
		if !l.Churned {
			continue
		}
		t.Run(l.Archetype+"/"+l.CustomerID, func(t *testing.T) {
			events := f.eventsOf(l.CustomerID)
			churn := dayIndex(t, l.ChurnDate)
			active := customerActivityDays(t, events)
			var after []int
			for _, d := range active {
				if d > churn {
					after = append(after, d)
				}
			}
			at := func(e Event) int { return dayIndex(t, e.OccurredAt) }
			switch l.Archetype {
			case ArchetypeGradualDecline:
				if len(after) > 0 || active[len(active)-1] != churn {
					t.Fatalf("last activity on day %d, churn day %d, %d active days after", active[len(active)-1], churn, len(after))
				}
				// Activity tapers: the last 30 days carry at most half of
				// a 30-day share of the 60 days before the taper at its
				// longest.
				var base, recent int
				for _, d := range active {
					switch {
					case d >= churn-180 && d < churn-120:
						base++
					case d > churn-30:
						recent++
					}
				}
				if churn >= 180 && float64(recent) > float64(base)/2/2 {
					t.Errorf("%d customer-initiated events in the last 30 days, %d in 60 days before the taper", recent, base)
				}
			case ArchetypeSuddenDrain:
				if len(after) > 0 {
					t.Fatalf("activity after the churn date on days %v", after)
				}
				first := -1
				for _, e := range events {
					if !isExternalOut(e) || at(e) < churn-45 || at(e) > churn {
						continue
					}
					amount, _ := parseDecimal(e.Amount, 2)
					after, _ := parseDecimal(e.BalanceAfter, 2)
					if amount >= after && first < 0 {
						first = at(e)
					}
				}
				if first < 0 || first > churn-21 {
					t.Errorf("first external outflow of half the balance on day %d, churn day %d", first, churn)
				}
			case ArchetypeSalaryMoved:
				var salaries []int
				for _, e := range events {
					if e.Type == TypeSalary {
						salaries = append(salaries, at(e))
					}
				}
				if len(salaries) < 3 || salaries[len(salaries)-1] != churn {
					t.Fatalf("salaries on %v, churn day %d", salaries, churn)
				}
				for _, d := range after {
					if d > churn+50 {
						t.Fatalf("activity on day %d, 50 days after the salary moved", d)
					}
				}
			case ArchetypeComplaintThenLeave:
				if len(after) > 0 {
					t.Fatalf("activity after the churn date on days %v", after)
				}
				n, worst, outflow := 0, 0.0, false
				for _, e := range events {
					if e.Type == TypeComplaint && *e.Sentiment > -0.6 && at(e) < churn-60 {
						continue // an ordinary mild complaint, long before
					}
					if e.Type == TypeComplaint {
						if at(e) < churn-50 || at(e) > churn || *e.Sentiment >= 0 {
							t.Errorf("complaint on day %d sentiment %v, churn day %d", at(e), *e.Sentiment, churn)
						}
						n++
						worst = min(worst, *e.Sentiment)
					}
					outflow = outflow || (isExternalOut(e) && at(e) == churn)
				}
				if n < 1 || n > 3 || worst > -0.6 || !outflow {
					t.Errorf("%d complaints, worst %v, outflow on the churn date %v", n, worst, outflow)
				}
			case ArchetypeAccountClosure:
				cancelled := -1
				closed, accounts := map[string]bool{}, map[string]int64{}
				for _, e := range events {
					if at(e) > churn {
						t.Fatalf("%s on day %d after closure on day %d", e.Type, at(e), churn)
					}
					switch e.Type {
					case TypeProductCancelled:
						cancelled = at(e)
					case TypeAccountClosed:
						if at(e) != churn {
							t.Errorf("account closed on day %d, churn day %d", at(e), churn)
						}
						closed[e.AccountID] = true
					}
					if isMoney(e.Type) {
						accounts[e.AccountID], _ = parseDecimal(e.BalanceAfter, 2)
					}
				}
				if cancelled < 0 || cancelled > churn-21 {
					t.Errorf("product cancelled on day %d, churn day %d", cancelled, churn)
				}
				for id, bal := range accounts {
					if !closed[id] || bal != 0 {
						t.Errorf("account %s closed %v with balance %d", id, closed[id], bal)
					}
				}
			case ArchetypeChurnedWonBack:
				if len(after) == 0 || after[0]-churn < 183 {
					t.Fatalf("activity after the churn date on days %v, want a return after ≥ 183 days", after)
				}
				if active[len(active)-len(after)-1] != churn {
					t.Errorf("last activity before dormancy on day %d, churn day %d", active[len(active)-len(after)-1], churn)
				}
			case ArchetypeSilent:
				// full activity up to the churn date, nothing after, and
				// no sign on the way: no taper, complaint, closure or
				// outflow the others show
				if len(after) > 0 {
					t.Fatalf("activity after the churn date on days %v", after)
				}
				if len(active) == 0 || active[len(active)-1] < churn-10 {
					t.Fatalf("last activity on day %v, churn day %d: no abrupt stop", active, churn)
				}
				for _, e := range events {
					switch {
					case e.Type == TypeAccountClosed || e.Type == TypeProductCancelled:
						t.Fatalf("%s on day %d", e.Type, at(e))
					case e.Type == TypeComplaint && at(e) > churn-30:
						t.Fatalf("complaint on day %d, churn day %d", at(e), churn)
					}
				}
			default:
				t.Fatalf("unknown archetype %q", l.Archetype)
			}
		})
	}
}

func TestShortAndUnusualTimelines(t *testing.T) {
	for _, cfg := range []Config{
		{Customers: 60, Months: 1, Seed: 1},
		{Customers: 60, Months: 2, Seed: 2},
		{Customers: 60, Months: 5, Seed: 3},
		{Customers: 60, Months: 30, Seed: 4},
		{Customers: 60, Months: 3, Seed: 5, Start: time.Date(2024, 2, 29, 15, 4, 5, 0, time.FixedZone("X", 3600))},
	} {
		t.Run(fmt.Sprintf("%d months from %s", cfg.Months, cfg.Start.Format(time.DateOnly)), func(t *testing.T) {
			b, err := Generate(cfg)
			if err != nil {
				t.Fatal(err)
			}
			start := cfg.withDefaults().Start
			end := start.AddDate(0, cfg.Months, 0)
			if len(b.Events) == 0 {
				t.Fatal("no events")
			}
			for _, e := range b.Events {
				if err := validateEvent(e, "EUR", 2, start, end); err != nil {
					t.Fatalf("%+v: %v", e, err)
				}
			}
			for _, l := range b.Labels {
				if l.Churned {
					d, _ := time.Parse(time.DateOnly, l.ChurnDate)
					if d.Before(start) || !d.Before(end) {
						t.Errorf("%s churn date %s outside the timeline", l.CustomerID, l.ChurnDate)
					}
				}
			}
		})
	}
}

func TestCurrencyDecimals(t *testing.T) {
	for cur, exp := range map[string]int{"JPY": 0, "KWD": 3, "USD": 2} {
		b, err := Generate(Config{Customers: 20, Months: 2, Seed: 1, Currency: cur, HomeBank: "MYBANK"})
		if err != nil {
			t.Fatal(err)
		}
		internal := 0
		for _, e := range b.Events {
			if err := validateEvent(e, cur, exp, defaultStart, defaultStart.AddDate(0, 2, 0)); err != nil {
				t.Fatalf("%s: %+v: %v", cur, e, err)
			}
			if e.Amount != "" && exp > 0 && len(e.Amount)-strings.IndexByte(e.Amount, '.')-1 != exp {
				t.Fatalf("%s amount %q", cur, e.Amount)
			}
			if e.CounterpartyBank == "MYBANK" {
				internal++
			}
		}
		if internal == 0 {
			t.Errorf("%s: no internal transfer to the configured home bank", cur)
		}
	}
}

func TestInvalidConfigIsRefused(t *testing.T) {
	p := DefaultParams()
	p.Noise.HolidayMinDays = 0
	q := DefaultParams()
	q.Noise.ExternalShareCap = 0
	for _, cfg := range []Config{
		{Customers: 10, Months: 12, Params: &q},
		{Customers: 0, Months: 12},
		{Customers: 10, Months: 0},
		{Customers: 10, Months: 1201},
		{Customers: maxCustomers + 1, Months: 1},
		{Customers: 10, Months: 12, Currency: "eur"},
		{Customers: 10, Months: 12, HomeBank: "OTHERBANK1"},
		{Customers: 10, Months: 12, HomeBank: "MY BANK"},
		{Customers: 10, Months: 12, Params: &p},
	} {
		if _, err := Generate(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func TestParamsAreUsed(t *testing.T) {
	p := DefaultParams()
	p.Churn.Rate = 0
	_, labels, err := Roster(Config{Customers: 300, Months: 12, Seed: 1, Params: &p})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range labels {
		if l.Churned {
			t.Fatalf("%s churned with a churn rate of 0", l.CustomerID)
		}
	}
	p.Churn.Rate = 1
	p.Churn.SilentShare = 0
	p.Churn.Mix = [6]float64{0, 1, 0, 0, 0, 0}
	_, labels, err = Roster(Config{Customers: 300, Months: 12, Seed: 1, Params: &p})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range labels {
		if l.Archetype != ArchetypeSuddenDrain {
			t.Fatalf("%s is %s, want every customer a sudden_drain", l.CustomerID, l.Archetype)
		}
	}
	p.Churn.SilentShare = 1
	_, labels, err = Roster(Config{Customers: 300, Months: 12, Seed: 1, Params: &p})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range labels {
		if l.Archetype != ArchetypeSilent || !l.Churned || l.ChurnDate == "" {
			t.Fatalf("%s is %s (churned %v %q), want every churner silent", l.CustomerID, l.Archetype, l.Churned, l.ChurnDate)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	events := 0
	for b.Loop() {
		bank, err := Generate(Config{Customers: 1000, Months: 12, Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		events = len(bank.Events)
	}
	b.ReportMetric(float64(events), "events/op")
}

func BenchmarkStreamEvents(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := StreamEvents(Config{Customers: 1000, Months: 12, Seed: 1}, func(Event) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFilesUseSpecFieldNames(t *testing.T) {
	b, err := Generate(Config{Customers: 300, Months: 12, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := b.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	keysOf := func(name string) map[string]bool {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]bool{}
		lines := bytes.Split(bytes.TrimSpace(raw), []byte("\n"))
		for _, line := range lines {
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for k := range m {
				keys[k] = true
			}
		}
		if name == "events.ndjson" && len(lines) != len(b.Events) {
			t.Errorf("%d lines for %d events", len(lines), len(b.Events))
		}
		return keys
	}
	want := map[string][]string{
		"customers.ndjson": {"customerId", "tier", "managerId", "branchId", "displayName"},
		"events.ndjson":    {"eventId", "customerId", "accountId", "occurredAt", "type", "amount", "currency", "counterpartyBank", "balanceAfter", "channel", "sentiment"},
		"labels.ndjson":    {"customerId", "archetype", "churned", "churnDate"},
	}
	for name, fields := range want {
		keys := keysOf(name)
		for _, f := range fields {
			if !keys[f] {
				t.Errorf("%s: no %q field", name, f)
			}
			delete(keys, f)
		}
		if len(keys) > 0 {
			t.Errorf("%s: unexpected fields %v", name, keys)
		}
	}
}
