package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/churnwatch/churnwatch/services/platform/money"
)

// caseFile is one testdata/*.yaml file: cases of events in, signals out.
type caseFile struct {
	Cases []ruleCase `yaml:"cases"`
}

// ruleCase is one data-driven scenario. Times are RFC 3339 or offsets from
// Start such as "+90d", "+90d-1s", "+2d12h".
type ruleCase struct {
	Name       string       `yaml:"name"`
	Tier       string       `yaml:"tier"`    // default MASS
	Unknown    bool         `yaml:"unknown"` // no customer record
	HomeBank   string       `yaml:"home_bank"`
	Thresholds []string     `yaml:"thresholds"` // key=value overrides
	Start      string       `yaml:"start"`      // default 2025-01-01T00:00:00Z
	Events     []caseEvent  `yaml:"events"`
	Rules      []string     `yaml:"rules"`     // compare only these rules' signals
	Signals    []caseSignal `yaml:"signals"`   // exactly these, in order
	Absent     []string     `yaml:"absent"`    // rules that must not fire
	Final      *caseFinal   `yaml:"final"`     // Risk at the end
	AsListed   bool         `yaml:"as_listed"` // apply in listed order, not sorted by time
	Refused    []string     `yaml:"refused"`   // event ids Check must refuse (too late)
	file       string
}

type caseEvent struct {
	ID        string   `yaml:"id"`
	At        string   `yaml:"at"`
	Advance   string   `yaml:"advance"` // an Advance step instead of an event
	Type      string   `yaml:"type"`
	Amount    string   `yaml:"amount"`
	Currency  string   `yaml:"currency"` // default EUR
	Account   string   `yaml:"account"`  // default A1
	Bank      string   `yaml:"bank"`     // counterparty bank
	Balance   string   `yaml:"balance"`
	Sentiment *float64 `yaml:"sentiment"`
	Repeat    int      `yaml:"repeat"` // this many events, ids suffixed -0, -1, …
	Every     string   `yaml:"every"`  // spacing of repeated events, e.g. "1d"
}

type caseSignal struct {
	Rule      string   `yaml:"rule"`
	At        string   `yaml:"at"`
	Observed  string   `yaml:"observed"`
	Threshold string   `yaml:"threshold"`
	Unit      string   `yaml:"unit"`
	Stage     string   `yaml:"stage"`
	Score     *int     `yaml:"score"`
	Severity  string   `yaml:"severity"`
	Events    []string `yaml:"events"`
	Tier      string   `yaml:"tier"`
	Unknown   *bool    `yaml:"unknown"`
	Detail    string   `yaml:"detail"` // a substring of the explanation
}

type caseFinal struct {
	Stage    string   `yaml:"stage"`
	Score    *int     `yaml:"score"`
	Severity string   `yaml:"severity"`
	Live     []string `yaml:"live"` // rules of the live signals, oldest first
	At       string   `yaml:"at"`   // Risk time, default the last step
}

// step is one compiled input: an event or an Advance.
type step struct {
	advance bool
	at      time.Time
	ev      Event
}

// compiled is a case ready to run.
type compiled struct {
	rc      ruleCase
	profile Profile
	th      Thresholds
	cfg     Config
	steps   []step
	start   time.Time
}

const caseCustomer = "C-test"

// loadCases reads and compiles every testdata/*.yaml case. Tests and
// benchmarks share it.
func loadCases(tb testing.TB) []compiled {
	tb.Helper()
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no testdata cases: %v", err)
	}
	var out []compiled
	names := map[string]bool{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		var cf caseFile
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		if err := dec.Decode(&cf); err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		for _, rc := range cf.Cases {
			rc.file = filepath.Base(f)
			if names[rc.Name] {
				tb.Fatalf("%s: duplicate case name %q", f, rc.Name)
			}
			names[rc.Name] = true
			c, err := compileCase(rc)
			if err != nil {
				tb.Fatalf("%s: case %q: %v", f, rc.Name, err)
			}
			out = append(out, c)
		}
	}
	return out
}

func compileCase(rc ruleCase) (compiled, error) {
	c := compiled{rc: rc, th: DefaultThresholds(), cfg: Config{HomeBank: rc.HomeBank}}
	c.profile.Known = !rc.Unknown
	c.profile.Tier = TierMass
	if rc.Tier != "" {
		t, err := ParseTier(rc.Tier)
		if err != nil {
			return c, err
		}
		c.profile.Tier = t
	}
	for _, kv := range rc.Thresholds {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return c, fmt.Errorf("threshold %q: want key=value", kv)
		}
		if err := c.th.Set(k, v); err != nil {
			return c, err
		}
	}
	if err := c.th.Validate(); err != nil {
		return c, err
	}
	start := "2025-01-01T00:00:00Z"
	if rc.Start != "" {
		start = rc.Start
	}
	var err error
	if c.start, err = time.Parse(time.RFC3339Nano, start); err != nil {
		return c, err
	}
	for i, ce := range rc.Events {
		if ce.Advance != "" {
			at, err := c.time(ce.Advance)
			if err != nil {
				return c, err
			}
			c.steps = append(c.steps, step{advance: true, at: at})
			continue
		}
		ev, err := c.event(ce, i)
		if err != nil {
			return c, fmt.Errorf("event %d: %w", i, err)
		}
		n, every := 1, time.Duration(0)
		if ce.Repeat > 0 {
			n = ce.Repeat
			if every, err = parseOffset(ce.Every); err != nil {
				return c, err
			}
		}
		for k := 0; k < n; k++ {
			e := ev
			if ce.Repeat > 0 {
				e.ID = fmt.Sprintf("%s-%d", ev.ID, k)
				e.Time = ev.Time.Add(time.Duration(k) * every)
			}
			c.steps = append(c.steps, step{at: e.Time, ev: e})
		}
	}
	if !rc.AsListed {
		sort.SliceStable(c.steps, func(i, j int) bool { return c.steps[i].at.Before(c.steps[j].at) })
	}
	return c, nil
}

func (c *compiled) time(s string) (time.Time, error) {
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		d, err := parseOffset(s)
		return c.start.Add(d), err
	}
	return time.Parse(time.RFC3339Nano, s)
}

// parseOffset parses "+90d-1s", "2d12h", "1d": signed terms of d/h/m/s.
func parseOffset(s string) (time.Duration, error) {
	var total time.Duration
	rest := s
	for rest != "" {
		sign := time.Duration(1)
		switch rest[0] {
		case '+':
			rest = rest[1:]
		case '-':
			sign, rest = -1, rest[1:]
		}
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return 0, fmt.Errorf("bad offset %q", s)
		}
		n, _ := strconv.Atoi(rest[:i])
		unit := map[byte]time.Duration{'d': 24 * time.Hour, 'h': time.Hour, 'm': time.Minute, 's': time.Second}[rest[i]]
		if unit == 0 {
			return 0, fmt.Errorf("bad offset unit in %q", s)
		}
		total += sign * time.Duration(n) * unit
		rest = rest[i+1:]
	}
	return total, nil
}

func (c *compiled) event(ce caseEvent, i int) (Event, error) {
	ev := Event{ID: ce.ID, CustomerID: caseCustomer, AccountID: ce.Account, CounterpartyBank: ce.Bank}
	if ev.ID == "" {
		ev.ID = fmt.Sprintf("e%d", i)
	}
	if ev.AccountID == "" {
		ev.AccountID = "A1"
	}
	var err error
	if ev.Time, err = c.time(ce.At); err != nil {
		return ev, err
	}
	if ev.Type, err = ParseEventType(ce.Type); err != nil {
		return ev, err
	}
	cur := ce.Currency
	if cur == "" {
		cur = "EUR"
	}
	if ce.Amount != "" {
		ev.Currency = cur
		if ev.Amount, err = money.ParseMinor(ce.Amount, cur); err != nil {
			return ev, err
		}
	}
	if ce.Balance != "" {
		ev.HasBalance = true
		if ev.BalanceAfter, err = money.ParseMinor(ce.Balance, cur); err != nil {
			return ev, err
		}
		if ev.Currency == "" {
			ev.Currency = cur
		}
	}
	if ce.Sentiment != nil {
		ev.Sentiment, ev.HasSentiment = *ce.Sentiment, true
	}
	return ev, nil
}

// play runs the case on a fresh state and returns every signal, the state
// and the ids of events Check refused.
func (c *compiled) play(e *Engine) ([]Signal, *State, []string) {
	s := &State{}
	var out []Signal
	var refused []string
	for _, st := range c.steps {
		if st.advance {
			out = append(out, e.Advance(s, st.at, c.profile, &c.th)...)
			continue
		}
		if e.Check(s, st.ev) != nil {
			refused = append(refused, st.ev.ID)
		}
		out = append(out, e.Apply(s, st.ev, c.profile, &c.th)...)
	}
	return out, s, refused
}

func (c *compiled) lastTime() time.Time {
	var t time.Time
	for _, st := range c.steps {
		if st.at.After(t) {
			t = st.at
		}
	}
	return t
}

func TestCases(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.rc.file+"/"+c.rc.Name, func(t *testing.T) {
			got, s, refused := c.play(New(c.cfg))
			if !reflect.DeepEqual(refused, c.rc.Refused) && len(refused)+len(c.rc.Refused) > 0 {
				t.Fatalf("refused events %v, want %v", refused, c.rc.Refused)
			}
			checkSignalInvariants(t, got, c.steps)
			filtered := got
			if len(c.rc.Rules) > 0 {
				filtered = nil
				for _, sig := range got {
					if contains(c.rc.Rules, sig.Rule) {
						filtered = append(filtered, sig)
					}
				}
			}
			if c.rc.Signals != nil || len(c.rc.Rules) > 0 {
				if len(filtered) != len(c.rc.Signals) {
					t.Fatalf("got %d signals, want %d:\n%s", len(filtered), len(c.rc.Signals), describe(filtered))
				}
				for i, want := range c.rc.Signals {
					c.checkSignal(t, i, filtered[i], want)
				}
			}
			for _, sig := range got {
				if contains(c.rc.Absent, sig.Rule) {
					t.Errorf("rule %s must not fire, got:\n%s", sig.Rule, describe([]Signal{sig}))
				}
			}
			if f := c.rc.Final; f != nil {
				at := c.lastTime()
				if f.At != "" {
					var err error
					if at, err = c.time(f.At); err != nil {
						t.Fatal(err)
					}
				}
				stage, score, sev, live := s.Risk(at)
				if f.Stage != "" && stage.String() != f.Stage {
					t.Errorf("final stage %s, want %s", stage, f.Stage)
				}
				if f.Score != nil && score != *f.Score {
					t.Errorf("final score %d, want %d", score, *f.Score)
				}
				if f.Severity != "" && sev.String() != f.Severity {
					t.Errorf("final severity %s, want %s", sev, f.Severity)
				}
				if f.Live != nil {
					var rules []string
					for _, l := range live {
						rules = append(rules, l.Rule)
					}
					if !reflect.DeepEqual(rules, f.Live) && !(len(rules) == 0 && len(f.Live) == 0) {
						t.Errorf("final live signals %v, want %v", rules, f.Live)
					}
				}
			}
		})
	}
}

func (c *compiled) checkSignal(t *testing.T, i int, got Signal, want caseSignal) {
	t.Helper()
	fail := func(field string, g, w any) {
		t.Errorf("signal %d (%s at %s): %s = %v, want %v", i, got.Rule, got.Time.Format(time.RFC3339), field, g, w)
	}
	if got.Rule != want.Rule {
		fail("rule", got.Rule, want.Rule)
	}
	if want.At != "" {
		at, err := c.time(want.At)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Time.Equal(at) {
			fail("time", got.Time.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
		}
	}
	if want.Observed != "" && got.Observed != want.Observed {
		fail("observed", got.Observed, want.Observed)
	}
	if want.Threshold != "" && got.Threshold != want.Threshold {
		fail("threshold", got.Threshold, want.Threshold)
	}
	if want.Unit != "" && got.Unit != want.Unit {
		fail("unit", got.Unit, want.Unit)
	}
	if want.Stage != "" && got.Stage.String() != want.Stage {
		fail("stage", got.Stage, want.Stage)
	}
	if want.Score != nil && got.Score != *want.Score {
		fail("score", got.Score, *want.Score)
	}
	if want.Severity != "" && got.Severity.String() != want.Severity {
		fail("severity", got.Severity, want.Severity)
	}
	if want.Events != nil && !reflect.DeepEqual(got.EventIDs, want.Events) && len(got.EventIDs)+len(want.Events) > 0 {
		fail("events", got.EventIDs, want.Events)
	}
	if want.Tier != "" && got.Tier.String() != want.Tier {
		fail("tier", got.Tier, want.Tier)
	}
	if want.Unknown != nil && got.UnknownCustomer != *want.Unknown {
		fail("unknown", got.UnknownCustomer, *want.Unknown)
	}
	if want.Detail != "" && !strings.Contains(got.Detail, want.Detail) {
		fail("detail", got.Detail, "…"+want.Detail+"…")
	}
}

// checkSignalInvariants holds for every signal of every case.
func checkSignalInvariants(t *testing.T, sigs []Signal, steps []step) {
	t.Helper()
	ids := map[string]bool{}
	for _, sig := range sigs {
		if len(sig.ID) != 32 || ids[sig.ID] {
			t.Errorf("signal id %q empty, malformed or repeated", sig.ID)
		}
		ids[sig.ID] = true
		if sig.CustomerID != caseCustomer || sig.Rule == "" || Weight(sig.Rule) < 0 {
			t.Errorf("signal customer %q rule %q", sig.CustomerID, sig.Rule)
		}
		if sig.Severity != SeverityFor(sig.Score) || sig.Score < 0 || sig.Score > 100 {
			t.Errorf("%s: score %d severity %s", sig.Rule, sig.Score, sig.Severity)
		}
		if sig.Observed == "" || sig.Threshold == "" || sig.Unit == "" || sig.Detail == "" {
			t.Errorf("%s: incomplete explanation %+v", sig.Rule, sig)
		}
		if sig.ThresholdVersion == 0 || len(sig.EventIDs) > MaxSignalEvents {
			t.Errorf("%s: version %d, %d event ids", sig.Rule, sig.ThresholdVersion, len(sig.EventIDs))
		}
		if strings.Contains(sig.Detail, caseCustomer) || strings.Contains(sig.Detail, "A1") ||
			strings.Contains(sig.Detail, sig.Observed) && sig.Unit != "days" && sig.Unit != "complaints" && sig.Unit != "closures" {
			t.Errorf("%s: detail leaks customer data: %q", sig.Rule, sig.Detail)
		}
		if sig.Time.Location() != time.UTC {
			t.Errorf("%s: time not UTC", sig.Rule)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func describe(sigs []Signal) string {
	var b strings.Builder
	for _, s := range sigs {
		fmt.Fprintf(&b, "  %s at %s observed=%s threshold=%s %s stage=%s score=%d %s events=%v: %s\n",
			s.Rule, s.Time.Format(time.RFC3339), s.Observed, s.Threshold, s.Unit, s.Stage, s.Score, s.Severity, s.EventIDs, s.Detail)
	}
	return b.String()
}
