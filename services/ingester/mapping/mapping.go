// Package mapping turns a core-banking export in the bank's own format into
// churnwatch events and customer profiles (SPEC §2), driven by a
// declarative YAML mapping: which file holds what, column → field, code
// tables → event types (conditions on several columns), date and number
// formats, delimiter and quoting, a currency default, ids built from
// templates, and the customer file derived from the bank's own tables
// (owner of an account, branch, tier by a rule such as average-balance
// bands).
//
// The package is pure: Load validates a mapping (errors carry the mapping's
// line), Convert reads the files through an Opener the caller supplies and
// returns Incoming* messages with their source file and line, ready for the
// ingester's validation. Rows the mapping rejects keep their line and a
// reason, so that nothing is silently dropped.
package mapping

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrInvalid is wrapped by every error Load returns for a mapping that does
// not validate.
var ErrInvalid = errors.New("invalid mapping")

// Problem is one validation error at a line of the mapping file.
type Problem struct {
	Line int
	Msg  string
}

// InvalidError lists every problem Load found, in line order.
type InvalidError struct{ Problems []Problem }

func (e *InvalidError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "mapping line %d: %s", p.Line, p.Msg)
	}
	return b.String()
}

func (e *InvalidError) Unwrap() error { return ErrInvalid }

// Mapping is a loaded, validated mapping.
type Mapping struct {
	Version  int                    `yaml:"mapping"`
	Name     string                 `yaml:"name"`
	Currency string                 `yaml:"currency"` // default currency of amounts
	Timezone string                 `yaml:"timezone"` // zone of dates without one; default UTC
	Files    map[string]*FileSpec   `yaml:"files"`
	Lookups  map[string]*LookupSpec `yaml:"lookups"`
	Events   *EventSpec             `yaml:"events"`
	Customer *CustomerSpec          `yaml:"customers"`

	loc *time.Location
}

// FileSpec says how one input file is read.
type FileSpec struct {
	Line      int      `yaml:"-"`
	Path      string   `yaml:"path"`      // relative to the data directory
	Format    string   `yaml:"format"`    // delimited (default) or ndjson
	Delimiter string   `yaml:"delimiter"` // one character, default ","; "\t" for tab
	Quote     *string  `yaml:"quote"`     // one character, default '"'; "" for none
	Header    *bool    `yaml:"header"`    // first line names the columns; default true
	Columns   []string `yaml:"columns"`   // column names when there is no header

	delim, quote byte
}

// LookupSpec is a keyed table of one file's rows, joined to another row by
// a column: owner.client_id is the client_id of the row of the lookup
// "owner" whose key column equals the referring row's `on` column.
type LookupSpec struct {
	Line  int       `yaml:"-"`
	File  string    `yaml:"file"`
	Key   string    `yaml:"key"`   // column of the lookup's file
	On    string    `yaml:"on"`    // column of the referring row; default Key
	Where Condition `yaml:"where"` // only rows matching
}

// EventSpec maps rows of one file to account events.
type EventSpec struct {
	Line        int         `yaml:"-"`
	File        string      `yaml:"file"`
	ID          Template    `yaml:"id"`
	Customer    Template    `yaml:"customer"`
	Account     Template    `yaml:"account"`
	OccurredAt  DateSpec    `yaml:"occurred_at"`
	Amount      NumberSpec  `yaml:"amount"`
	Balance     *NumberSpec `yaml:"balance_after"`
	Currency    Template    `yaml:"currency"` // default: the mapping's currency
	Sentiment   Template    `yaml:"sentiment"`
	Types       []*TypeRule `yaml:"types"`
	Number      NumberFmt   `yaml:"number"` // default number format
	Unmatched   string      `yaml:"unmatched"`
	unmatchedAt int
}

// TypeRule is one line of the code table: the first rule whose conditions
// all hold gives the event's type (or rejects the row with a reason).
type TypeRule struct {
	Line             int       `yaml:"-"`
	When             Condition `yaml:"when"`
	Type             string    `yaml:"type"`
	Reject           string    `yaml:"reject"`
	Channel          string    `yaml:"channel"`
	CounterpartyBank Template  `yaml:"counterparty_bank"`
}

// DateSpec parses a column into occurredAt.
type DateSpec struct {
	Line   int    `yaml:"-"`
	Column string `yaml:"column"`
	// Format: tokens YYYY YY MM DD hh mm ss (e.g. YYMMDD, DD.MM.YYYY hh:mm),
	// or rfc3339.
	Format string `yaml:"format"`
	Time   string `yaml:"time"` // time of day for dates without one, hh:mm; default 00:00
	layout string
	hour   int
	minute int
}

// NumberFmt is how a bank writes numbers.
type NumberFmt struct {
	Decimal   string `yaml:"decimal"`   // default "."
	Thousands string `yaml:"thousands"` // grouping characters to drop, e.g. " " or "'"
}

// NumberSpec reads a decimal column.
type NumberSpec struct {
	Line   int    `yaml:"-"`
	Column string `yaml:"column"`
	// Sign: "keep" (default for balances), "abs" (drop a sign: the type
	// rule says the direction) or "positive" (default for amounts: a sign
	// rejects the row).
	Sign string `yaml:"sign"`
}

// CustomerSpec derives customer profiles from the bank's tables.
type CustomerSpec struct {
	Line        int       `yaml:"-"`
	File        string    `yaml:"file"`
	Where       Condition `yaml:"where"`
	ID          Template  `yaml:"id"`
	Branch      Template  `yaml:"branch"`
	Manager     Template  `yaml:"manager"`
	DisplayName Template  `yaml:"display_name"`
	Tier        TierRule  `yaml:"tier"`
	// OnlyWithEvents leaves out customers none of whose events are in the
	// export (a bank's customer table covers more than one export).
	OnlyWithEvents bool `yaml:"only_with_events"`
}

// TierRule gives a customer's tier: a constant, a column through a table,
// or bands of the average of balanceAfter over the customer's events.
type TierRule struct {
	Line           int               `yaml:"-"`
	Constant       string            `yaml:"constant"`
	Column         string            `yaml:"column"`
	Map            map[string]string `yaml:"map"`
	AverageBalance []Band            `yaml:"average_balance"`
	Default        string            `yaml:"default"` // no events / no match
}

// Band is one average-balance band: customers whose average is ≥ Min (in
// the order listed; the last band may omit min) get Tier.
type Band struct {
	Min  *float64 `yaml:"min"`
	Tier string   `yaml:"tier"`
}

// Condition is a set of column tests that must all hold. A test is a
// string (equal, after trimming spaces), a list (any of) or a map:
// {not: X | [..]}, {empty: true|false}.
type Condition struct {
	Line  int
	Tests []Test
}

// Test is one column test of a Condition.
type Test struct {
	Column string
	AnyOf  []string
	Not    bool
	Empty  *bool
}

// Template is text with {column} or {lookup.column} references; {{ and }}
// are literal braces.
type Template struct {
	Line  int
	Text  string
	parts []part
}

type part struct {
	lit    string
	lookup string // "" = the row itself
	column string
}

// UnmarshalYAML records the line of every spec.
func (f *FileSpec) UnmarshalYAML(n *yaml.Node) error {
	type plain FileSpec
	if err := decodeStrict(n, (*plain)(f)); err != nil {
		return err
	}
	f.Line = n.Line
	return nil
}

// UnmarshalYAML records the line.
func (l *LookupSpec) UnmarshalYAML(n *yaml.Node) error {
	type plain LookupSpec
	if err := decodeStrict(n, (*plain)(l)); err != nil {
		return err
	}
	l.Line = n.Line
	return nil
}

// UnmarshalYAML records the line.
func (e *EventSpec) UnmarshalYAML(n *yaml.Node) error {
	type plain EventSpec
	if err := decodeStrict(n, (*plain)(e)); err != nil {
		return err
	}
	e.Line = n.Line
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "unmatched" {
			e.unmatchedAt = n.Content[i].Line
		}
	}
	return nil
}

// UnmarshalYAML records the line.
func (r *TypeRule) UnmarshalYAML(n *yaml.Node) error {
	type plain TypeRule
	if err := decodeStrict(n, (*plain)(r)); err != nil {
		return err
	}
	r.Line = n.Line
	return nil
}

// UnmarshalYAML accepts a column name alone or the full form.
func (d *DateSpec) UnmarshalYAML(n *yaml.Node) error {
	type plain DateSpec
	if err := decodeStrict(n, (*plain)(d)); err != nil {
		return err
	}
	d.Line = n.Line
	return nil
}

// UnmarshalYAML accepts a column name alone or the full form.
func (s *NumberSpec) UnmarshalYAML(n *yaml.Node) error {
	s.Line = n.Line
	if n.Kind == yaml.ScalarNode {
		s.Column = n.Value
		return nil
	}
	type plain NumberSpec
	if err := decodeStrict(n, (*plain)(s)); err != nil {
		return err
	}
	s.Line = n.Line
	return nil
}

// UnmarshalYAML records the line.
func (c *CustomerSpec) UnmarshalYAML(n *yaml.Node) error {
	type plain CustomerSpec
	if err := decodeStrict(n, (*plain)(c)); err != nil {
		return err
	}
	c.Line = n.Line
	return nil
}

// UnmarshalYAML accepts a constant tier name or the full form.
func (t *TierRule) UnmarshalYAML(n *yaml.Node) error {
	t.Line = n.Line
	if n.Kind == yaml.ScalarNode {
		t.Constant = n.Value
		return nil
	}
	type plain TierRule
	if err := decodeStrict(n, (*plain)(t)); err != nil {
		return err
	}
	t.Line = n.Line
	return nil
}

// UnmarshalYAML reads a template from a scalar.
func (t *Template) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a template is text such as \"C{client_id}\"", n.Line)}}
	}
	t.Line, t.Text = n.Line, n.Value
	return nil
}

// UnmarshalYAML reads {column: value | [values] | {not: …, empty: …}}.
func (c *Condition) UnmarshalYAML(n *yaml.Node) error {
	c.Line = n.Line
	if n.Kind != yaml.MappingNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a condition is a map of column: value", n.Line)}}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		t := Test{Column: k.Value}
		switch v.Kind {
		case yaml.ScalarNode:
			t.AnyOf = []string{strings.TrimSpace(v.Value)}
		case yaml.SequenceNode:
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s: list of values expected", e.Line, k.Value)}}
				}
				t.AnyOf = append(t.AnyOf, strings.TrimSpace(e.Value))
			}
		case yaml.MappingNode:
			var m struct {
				Not   yaml.Node `yaml:"not"`
				Empty *bool     `yaml:"empty"`
			}
			if err := decodeStrict(v, &m); err != nil {
				return err
			}
			t.Empty = m.Empty
			switch m.Not.Kind {
			case 0:
			case yaml.ScalarNode:
				t.Not, t.AnyOf = true, []string{strings.TrimSpace(m.Not.Value)}
			case yaml.SequenceNode:
				t.Not = true
				for _, e := range m.Not.Content {
					t.AnyOf = append(t.AnyOf, strings.TrimSpace(e.Value))
				}
			}
			if t.Empty == nil && !t.Not {
				return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s: want {not: …} or {empty: true|false}", v.Line, k.Value)}}
			}
		default:
			return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s: value, list or map expected", v.Line, k.Value)}}
		}
		c.Tests = append(c.Tests, t)
	}
	return nil
}

// decodeStrict decodes a mapping node into the struct v points to; a key
// that is not a field of v is an error with its line (Node.Decode alone
// would ignore it).
func decodeStrict(n *yaml.Node, v any) error {
	if n.Kind == yaml.MappingNode {
		known := map[string]bool{}
		t := reflect.TypeOf(v).Elem()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if name != "" && name != "-" {
				known[name] = true
			}
		}
		var errs []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; !known[k.Value] {
				names := make([]string, 0, len(known))
				for n := range known {
					names = append(names, n)
				}
				sort.Strings(names)
				errs = append(errs, fmt.Sprintf("line %d: unknown key %q (known here: %s)", k.Line, k.Value, strings.Join(names, ", ")))
			}
		}
		if errs != nil {
			return &yaml.TypeError{Errors: errs}
		}
	}
	return n.Decode(v)
}

// Load parses and validates a mapping. Every problem found is reported
// with its line (an *InvalidError wrapping ErrInvalid).
func Load(src []byte) (*Mapping, error) {
	var m Mapping
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, &InvalidError{Problems: yamlProblems(err)}
	}
	if ps := m.validate(); len(ps) > 0 {
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
		return nil, &InvalidError{Problems: ps}
	}
	return &m, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func yamlProblems(err error) []Problem {
	var out []Problem
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for _, s := range msgs {
		for _, s := range strings.Split(s, "\n") {
			s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "yaml: unmarshal errors:"))
			if s == "" {
				continue
			}
			p := Problem{Msg: s}
			if mm := yamlLineRE.FindStringSubmatch(s); mm != nil {
				fmt.Sscanf(mm[1], "%d", &p.Line)
				p.Msg = mm[2]
			}
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = append(out, Problem{Msg: err.Error()})
	}
	return out
}
