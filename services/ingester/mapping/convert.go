package mapping

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// ErrRow is wrapped by the error of every row the mapping rejects.
var ErrRow = errors.New("row rejected by the mapping")

// Opener opens an input file named by a FileSpec's path.
type Opener func(path string) (io.ReadCloser, error)

// Record is one converted row: its file (the FileSpec's path) and 1-based
// line, the message, and why the row was rejected (Value then holds what
// could be filled in, often the id).
type Record[T any] struct {
	File  string
	Line  int
	Value T
	Err   error
}

// Output is a whole conversion.
type Output struct {
	Customers []Record[*cwv1.IncomingCustomer]
	Events    []Record[*cwv1.IncomingEvent]
	// Types counts the converted events by type, and rejected rows by
	// reason, for the summary a bank checks its mapping against.
	Types map[string]int
}

// MaxLine bounds one input line.
const MaxLine = 1 << 20

// table is the columns of one file and its rows as they are read.
type table struct {
	spec *FileSpec
	cols map[string]int // delimited files
	sc   *bufio.Scanner
	line int
	buf  []string
}

type row struct {
	t    *table
	vals []string
	obj  map[string]string // ndjson
	line int
}

func (r *row) get(col string) (string, bool) {
	if r.obj != nil {
		v, ok := r.obj[col]
		return strings.TrimSpace(v), ok
	}
	i, ok := r.t.cols[col]
	if !ok || i >= len(r.vals) {
		return "", ok
	}
	return strings.TrimSpace(r.vals[i]), true
}

func openTable(open Opener, spec *FileSpec) (*table, io.Closer, error) {
	rc, err := open(spec.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", spec.Path, err)
	}
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	t := &table{spec: spec, sc: sc}
	if spec.Format == "ndjson" {
		return t, rc, nil
	}
	t.cols = map[string]int{}
	names := spec.Columns
	if spec.Header == nil || *spec.Header {
		vals, err := t.nextLine()
		if err != nil {
			rc.Close()
			if errors.Is(err, io.EOF) {
				return nil, nil, fmt.Errorf("%s: empty, a header row was expected (mapping line %d)", spec.Path, spec.Line)
			}
			return nil, nil, fmt.Errorf("%s header: %w", spec.Path, err)
		}
		if len(names) == 0 {
			names = vals
		}
	}
	for i, n := range names {
		t.cols[strings.TrimSpace(strings.TrimPrefix(n, "\ufeff"))] = i
	}
	return t, rc, nil
}

// nextLine returns the next non-blank line split into fields.
func (t *table) nextLine() ([]string, error) {
	for t.sc.Scan() {
		t.line++
		b := bytes.TrimRight(t.sc.Bytes(), "\r")
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		vals, err := splitLine(string(b), t.spec.delim, t.spec.quote, t.buf[:0])
		t.buf = vals
		if err != nil {
			return vals, fmt.Errorf("line %d: %w", t.line, err)
		}
		return vals, nil
	}
	if err := t.sc.Err(); err != nil {
		return nil, fmt.Errorf("%s after line %d: %w", t.spec.Path, t.line, err)
	}
	return nil, io.EOF
}

// next returns the next row; a row that cannot be split comes back with
// its error and line, and reading goes on.
func (t *table) next() (*row, error) {
	if t.spec.Format == "ndjson" {
		for t.sc.Scan() {
			t.line++
			b := bytes.TrimSpace(t.sc.Bytes())
			if len(b) == 0 {
				continue
			}
			r := &row{t: t, line: t.line, obj: map[string]string{}}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				return r, fmt.Errorf("%w: not a JSON object: %v", ErrRow, err)
			}
			for k, v := range m {
				switch v := v.(type) {
				case string:
					r.obj[k] = v
				case json.Number:
					r.obj[k] = v.String()
				case float64:
					r.obj[k] = strconv.FormatFloat(v, 'f', -1, 64)
				case bool:
					r.obj[k] = strconv.FormatBool(v)
				case nil:
					r.obj[k] = ""
				default:
					r.obj[k] = "" // nested values are not columns
				}
			}
			return r, nil
		}
		if err := t.sc.Err(); err != nil {
			return nil, fmt.Errorf("%s after line %d: %w", t.spec.Path, t.line, err)
		}
		return nil, io.EOF
	}
	vals, err := t.nextLine()
	if errors.Is(err, io.EOF) {
		return nil, err
	}
	r := &row{t: t, vals: append([]string(nil), vals...), line: t.line}
	if err != nil {
		if strings.Contains(err.Error(), " after line ") {
			return nil, err
		}
		return r, fmt.Errorf("%w: %v", ErrRow, err)
	}
	if len(vals) != len(t.cols) && len(t.cols) > 0 {
		return r, fmt.Errorf("%w: %d fields, the header has %d", ErrRow, len(vals), len(t.cols))
	}
	return r, nil
}

// splitLine splits one delimited line; quote 0 = no quoting. A quoted
// field may hold the delimiter and doubled quotes.
func splitLine(s string, delim, quote byte, dst []string) ([]string, error) {
	var b strings.Builder
	for i := 0; ; {
		if quote != 0 && i < len(s) && s[i] == quote {
			b.Reset()
			i++
			for {
				j := strings.IndexByte(s[i:], quote)
				if j < 0 {
					return dst, fmt.Errorf("unclosed quote")
				}
				b.WriteString(s[i : i+j])
				i += j + 1
				if i < len(s) && s[i] == quote {
					b.WriteByte(quote)
					i++
					continue
				}
				break
			}
			dst = append(dst, b.String())
			if i == len(s) {
				return dst, nil
			}
			if s[i] != delim {
				return dst, fmt.Errorf("text after a closing quote at byte %d", i)
			}
			i++
			if i == len(s) {
				return append(dst, ""), nil
			}
			continue
		}
		j := strings.IndexByte(s[i:], delim)
		if j < 0 {
			return append(dst, s[i:]), nil
		}
		dst = append(dst, s[i:i+j])
		i += j + 1
		if i == len(s) {
			return append(dst, ""), nil
		}
	}
}

// lookup is one loaded lookup: key → row.
type lookup struct {
	spec *LookupSpec
	rows map[string]*row
}

type converter struct {
	m       *Mapping
	lookups map[string]*lookup
}

func (c *converter) expand(t *Template, r *row) (string, error) {
	if len(t.parts) == 0 {
		return t.Text, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		b.WriteString(p.lit)
		if p.column == "" {
			continue
		}
		v, err := c.value(p.lookup, p.column, r)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// value reads column of the row, or of the row lookup lk joins to it.
func (c *converter) value(lk, column string, r *row) (string, error) {
	if lk == "" {
		v, _ := r.get(column)
		return v, nil
	}
	l := c.lookups[lk]
	key, _ := r.get(l.spec.On)
	jr, ok := l.rows[key]
	if !ok {
		return "", fmt.Errorf("%w: no %s row with %s = %q (lookup %q, mapping line %d)", ErrRow, l.spec.File, l.spec.Key, key, lk, l.spec.Line)
	}
	v, _ := jr.get(column)
	return v, nil
}

func (c *converter) match(cond *Condition, r *row) (bool, error) {
	for _, t := range cond.Tests {
		lk, col, ok := strings.Cut(t.Column, ".")
		if !ok {
			lk, col = "", t.Column
		}
		v, err := c.value(lk, col, r)
		if err != nil {
			return false, err
		}
		if t.Empty != nil && (v == "") != *t.Empty {
			return false, nil
		}
		if len(t.AnyOf) > 0 && has(t.AnyOf, v) == t.Not {
			return false, nil
		}
	}
	return true, nil
}

// checkColumns fails the conversion when the mapping names a column the
// file's header does not have: every row would be wrong the same way.
func checkColumns(t *table, where string, line int, cols ...string) error {
	if t.cols == nil {
		return nil
	}
	for _, col := range cols {
		if col == "" {
			continue
		}
		if _, ok := t.cols[col]; !ok {
			have := make([]string, 0, len(t.cols))
			for k := range t.cols {
				have = append(have, k)
			}
			sort.Strings(have)
			return fmt.Errorf("mapping line %d: %s: column %q is not in %s (its columns: %s)", line, where, col, t.spec.Path, strings.Join(have, ", "))
		}
	}
	return nil
}

func (t *Template) columns(lk string) []string {
	var out []string
	for _, p := range t.parts {
		if p.column != "" && p.lookup == lk {
			out = append(out, p.column)
		}
	}
	return out
}

func (c *Condition) columns(lk string) []string {
	var out []string
	for _, t := range c.Tests {
		l, col, ok := strings.Cut(t.Column, ".")
		if !ok {
			l, col = "", t.Column
		}
		if l == lk {
			out = append(out, col)
		}
	}
	return out
}

// Convert reads the mapping's files through open and converts them. Only a
// problem with a file as a whole (missing, no header, a column the mapping
// names but the file lacks, a read error) is an error; rows the mapping
// rejects are Records with Err.
func (m *Mapping) Convert(open Opener) (*Output, error) {
	return m.convert(open, true, m.Customer != nil)
}

// ConvertEvents converts the events file alone (with its lookups), as the
// ingester's HTTP intake does for a body in the bank's own format.
func (m *Mapping) ConvertEvents(open Opener) (*Output, error) {
	return m.convert(open, true, false)
}

// ErrNeedsEvents is returned by ConvertCustomers for a mapping whose
// customers depend on the events (a tier by average balance, or
// only_with_events): such customers can only be derived beside the events.
var ErrNeedsEvents = errors.New("the mapping derives customers from the events")

// CustomersNeedEvents says whether the customer file can only be converted
// together with the events (see ErrNeedsEvents).
func (m *Mapping) CustomersNeedEvents() bool {
	cs := m.Customer
	return cs != nil && (cs.OnlyWithEvents || len(cs.Tier.AverageBalance) > 0)
}

// ConvertCustomers converts the customer file alone (with its lookups).
func (m *Mapping) ConvertCustomers(open Opener) (*Output, error) {
	switch {
	case m.Customer == nil:
		return nil, fmt.Errorf("mapping %q has no customers section", m.Name)
	case m.CustomersNeedEvents():
		return nil, fmt.Errorf("mapping %q (line %d): %w (tier by average_balance or only_with_events); convert both with churnctl ingest --mapping", m.Name, m.Customer.Line, ErrNeedsEvents)
	}
	return m.convert(open, false, true)
}

func (m *Mapping) convert(open Opener, events, customers bool) (*Output, error) {
	c := &converter{m: m, lookups: map[string]*lookup{}}
	// templates and conditions referring to each lookup, to check its columns
	uses := map[string][]string{}
	var all []*Template
	conds := []*Condition{}
	if events {
		all = append(all, &m.Events.ID, &m.Events.Customer, &m.Events.Account, &m.Events.Currency, &m.Events.Sentiment)
		for _, r := range m.Events.Types {
			all = append(all, &r.CounterpartyBank)
			conds = append(conds, &r.When)
		}
	}
	if cs := m.Customer; cs != nil && customers {
		all = append(all, &cs.ID, &cs.Branch, &cs.Manager, &cs.DisplayName)
		conds = append(conds, &cs.Where)
	}
	for name := range m.Lookups {
		for _, t := range all {
			uses[name] = append(uses[name], t.columns(name)...)
		}
		for _, cd := range conds {
			uses[name] = append(uses[name], cd.columns(name)...)
		}
	}
	names := make([]string, 0, len(m.Lookups))
	for name := range m.Lookups {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		spec := m.Lookups[name]
		l, err := c.load(open, name, spec, uses[name])
		if err != nil {
			return nil, err
		}
		c.lookups[name] = l
	}
	out := &Output{Types: map[string]int{}}
	bal := map[string]*balanceSum{}
	if events {
		if err := c.events(open, out, bal); err != nil {
			return nil, err
		}
	}
	if customers {
		if err := c.customers(open, out, bal); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *converter) load(open Opener, name string, spec *LookupSpec, cols []string) (*lookup, error) {
	fs := c.m.Files[spec.File]
	t, closer, err := openTable(open, fs)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	where := "lookups." + name
	if err := checkColumns(t, where, spec.Line, append(append(cols, spec.Key), spec.Where.columns("")...)...); err != nil {
		return nil, err
	}
	l := &lookup{spec: spec, rows: map[string]*row{}}
	for {
		r, err := t.next()
		if errors.Is(err, io.EOF) {
			return l, nil
		}
		if r == nil {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("%s line %d (lookup %q): %v", fs.Path, r.line, name, err)
		}
		ok, err := c.match(&spec.Where, r)
		if err != nil || !ok {
			continue
		}
		key, _ := r.get(spec.Key)
		if prev, dup := l.rows[key]; dup {
			return nil, fmt.Errorf("%s line %d: lookup %q (mapping line %d) has key %s = %q already on line %d; narrow it with where: so that each key is one row",
				fs.Path, r.line, name, spec.Line, spec.Key, key, prev.line)
		}
		l.rows[key] = r
	}
}

type balanceSum struct {
	sum float64
	n   int
}

func (c *converter) events(open Opener, out *Output, bal map[string]*balanceSum) error {
	e := c.m.Events
	fs := c.m.Files[e.File]
	t, closer, err := openTable(open, fs)
	if err != nil {
		return err
	}
	defer closer.Close()
	type use struct {
		line int
		cols []string
	}
	uses := []use{{e.OccurredAt.Line, []string{e.OccurredAt.Column}}, {e.Amount.Line, []string{e.Amount.Column}}}
	if e.Balance != nil {
		uses = append(uses, use{e.Balance.Line, []string{e.Balance.Column}})
	}
	for _, tp := range []*Template{&e.ID, &e.Customer, &e.Account, &e.Currency, &e.Sentiment} {
		uses = append(uses, use{tp.Line, tp.columns("")})
	}
	for _, r := range e.Types {
		uses = append(uses, use{r.Line, append(r.CounterpartyBank.columns(""), r.When.columns("")...)})
	}
	for _, l := range c.lookups {
		uses = append(uses, use{l.spec.Line, []string{l.spec.On}})
	}
	for _, u := range uses {
		if err := checkColumns(t, "events", u.line, u.cols...); err != nil {
			return err
		}
	}
	for {
		r, err := t.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if r == nil {
			return err
		}
		ev := &cwv1.IncomingEvent{}
		if err == nil {
			err = c.event(r, ev)
		}
		rec := Record[*cwv1.IncomingEvent]{File: fs.Path, Line: r.line, Value: ev, Err: err}
		if err != nil {
			out.Types["rejected: "+reasonKey(err)]++
		} else {
			out.Types[ev.Type]++
			if ev.BalanceAfter != "" {
				if f, perr := strconv.ParseFloat(ev.BalanceAfter, 64); perr == nil {
					b := bal[ev.CustomerId]
					if b == nil {
						b = &balanceSum{}
						bal[ev.CustomerId] = b
					}
					b.sum += f
					b.n++
				}
			}
		}
		out.Events = append(out.Events, rec)
	}
}

// reasonKey is the reason of a rejected row without its values, so that
// counts group rows rejected for the same cause.
func reasonKey(err error) string {
	s := strings.TrimPrefix(err.Error(), ErrRow.Error()+": ")
	if i := strings.IndexAny(s, "\"="); i > 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

func (c *converter) event(r *row, ev *cwv1.IncomingEvent) error {
	e := c.m.Events
	var err error
	if ev.EventId, err = c.expand(&e.ID, r); err != nil {
		return err
	}
	if ev.CustomerId, err = c.expand(&e.Customer, r); err != nil {
		return err
	}
	if ev.AccountId, err = c.expand(&e.Account, r); err != nil {
		return err
	}
	var rule *TypeRule
	for _, tr := range e.Types {
		ok, err := c.match(&tr.When, r)
		if err != nil {
			return err
		}
		if ok {
			rule = tr
			break
		}
	}
	if rule == nil {
		return fmt.Errorf("%w: no events.types rule matches (%s); add one to the mapping's code table", ErrRow, c.codes(r))
	}
	if rule.Reject != "" {
		return fmt.Errorf("%w: %s (mapping line %d)", ErrRow, rule.Reject, rule.Line)
	}
	ev.Type = rule.Type
	ev.Channel = rule.Channel
	if ev.CounterpartyBank, err = c.expand(&rule.CounterpartyBank, r); err != nil {
		return err
	}
	raw, _ := r.get(e.OccurredAt.Column)
	at, err := e.OccurredAt.parse(raw, c.m.loc)
	if err != nil {
		return err
	}
	ev.OccurredAt = at.Format(time.RFC3339)
	if has(moneyTypes, ev.Type) {
		v, _ := r.get(e.Amount.Column)
		if ev.Amount, err = e.Number.parse(v, e.Amount.Sign, "amount"); err != nil {
			return err
		}
		if ev.Amount == "" {
			return fmt.Errorf("%w: %s needs an amount and column %q is empty", ErrRow, ev.Type, e.Amount.Column)
		}
		ev.Currency = c.m.Currency
		if e.Currency.Text != "" {
			cur, err := c.expand(&e.Currency, r)
			if err != nil {
				return err
			}
			if cur != "" {
				ev.Currency = strings.ToUpper(cur)
			}
		}
	}
	if e.Balance != nil {
		v, _ := r.get(e.Balance.Column)
		if ev.BalanceAfter, err = e.Number.parse(v, e.Balance.Sign, "balance_after"); err != nil {
			return err
		}
	}
	if e.Sentiment.Text != "" && ev.Type == "COMPLAINT" {
		if ev.Sentiment, err = c.expand(&e.Sentiment, r); err != nil {
			return err
		}
	}
	return nil
}

// codes names the values the code table tests, for the reason of a row no
// rule matched.
func (c *converter) codes(r *row) string {
	seen := map[string]bool{}
	var parts []string
	for _, tr := range c.m.Events.Types {
		for _, t := range tr.When.Tests {
			if seen[t.Column] || strings.Contains(t.Column, ".") {
				continue
			}
			seen[t.Column] = true
			v, _ := r.get(t.Column)
			parts = append(parts, fmt.Sprintf("%s=%q", t.Column, v))
		}
	}
	return strings.Join(parts, " ")
}

func (d *DateSpec) parse(s string, loc *time.Location) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: column %q (the event's date) is empty", ErrRow, d.Column)
	}
	t, err := time.ParseInLocation(d.layout, s, loc)
	if err != nil {
		return t, fmt.Errorf("%w: date %q does not match the format %q of events.occurred_at (mapping line %d)", ErrRow, s, d.Format, d.Line)
	}
	if d.Time != "" {
		t = time.Date(t.Year(), t.Month(), t.Day(), d.hour, d.minute, 0, 0, loc)
	}
	return t, nil
}

// parse normalises a number to a SPEC decimal string ("1234.50").
func (f NumberFmt) parse(s, sign, field string) (string, error) {
	if s == "" {
		return "", nil
	}
	orig := s
	for _, r := range f.Thousands {
		s = strings.ReplaceAll(s, string(r), "")
	}
	if f.Decimal != "." {
		if strings.Contains(s, ".") {
			return "", fmt.Errorf("%w: %s %q: '.' in a number whose decimal separator is %q", ErrRow, field, orig, f.Decimal)
		}
		s = strings.ReplaceAll(s, f.Decimal, ".")
	}
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	intPart, frac, dot := strings.Cut(s, ".")
	if intPart == "" && frac == "" || !digits(intPart) || !digits(frac) || dot && frac == "" {
		return "", fmt.Errorf("%w: %s %q is not a number", ErrRow, field, orig)
	}
	if intPart == "" {
		intPart = "0"
	}
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	out := intPart
	if dot {
		out += "." + frac
	}
	switch {
	case neg && sign == "positive":
		return "", fmt.Errorf("%w: %s %q is negative; set sign: abs when the type rule gives the direction", ErrRow, field, orig)
	case neg && sign == "keep" && strings.Trim(out, "0.") != "":
		out = "-" + out
	}
	return out, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (c *converter) customers(open Opener, out *Output, bal map[string]*balanceSum) error {
	cs := c.m.Customer
	fs := c.m.Files[cs.File]
	t, closer, err := openTable(open, fs)
	if err != nil {
		return err
	}
	defer closer.Close()
	cols := cs.Where.columns("")
	for _, tp := range []*Template{&cs.ID, &cs.Branch, &cs.Manager, &cs.DisplayName} {
		cols = append(cols, tp.columns("")...)
	}
	cols = append(cols, cs.Tier.Column)
	for _, l := range c.lookups {
		cols = append(cols, l.spec.On)
	}
	if err := checkColumns(t, "customers", cs.Line, cols...); err != nil {
		return err
	}
	seen := map[string]bool{}
	withEvents := map[string]bool{}
	if cs.OnlyWithEvents {
		for _, e := range out.Events {
			if e.Err == nil {
				withEvents[e.Value.CustomerId] = true
			}
		}
	}
	for {
		r, err := t.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if r == nil {
			return err
		}
		cu := &cwv1.IncomingCustomer{}
		if err == nil {
			var ok bool
			if ok, err = c.match(&cs.Where, r); err == nil && !ok {
				continue
			}
		}
		if err == nil {
			err = c.customer(r, cu, bal)
		}
		if err == nil && (seen[cu.CustomerId] || cs.OnlyWithEvents && !withEvents[cu.CustomerId]) {
			continue // a second account of the same owner; or not in this export
		}
		if err != nil && cs.OnlyWithEvents && errors.Is(err, ErrRow) && cu.CustomerId != "" && !withEvents[cu.CustomerId] {
			continue
		}
		seen[cu.CustomerId] = true
		out.Customers = append(out.Customers, Record[*cwv1.IncomingCustomer]{File: fs.Path, Line: r.line, Value: cu, Err: err})
	}
}

func (c *converter) customer(r *row, cu *cwv1.IncomingCustomer, bal map[string]*balanceSum) error {
	cs := c.m.Customer
	var err error
	if cu.CustomerId, err = c.expand(&cs.ID, r); err != nil {
		return err
	}
	if cu.BranchId, err = c.expand(&cs.Branch, r); err != nil {
		return err
	}
	if cu.ManagerId, err = c.expand(&cs.Manager, r); err != nil {
		return err
	}
	if cu.DisplayName, err = c.expand(&cs.DisplayName, r); err != nil {
		return err
	}
	tr := &cs.Tier
	cu.Tier = tr.Default
	switch {
	case tr.Constant != "":
		cu.Tier = tr.Constant
	case tr.Column != "":
		v, _ := r.get(tr.Column)
		if m, ok := tr.Map[v]; ok {
			cu.Tier = m
		} else if len(tr.Map) == 0 {
			cu.Tier = strings.ToUpper(v)
		}
	case len(tr.AverageBalance) > 0:
		if b := bal[cu.CustomerId]; b != nil && b.n > 0 {
			avg := b.sum / float64(b.n)
			for _, band := range tr.AverageBalance {
				if band.Min == nil || avg >= *band.Min {
					cu.Tier = band.Tier
					break
				}
			}
		}
	}
	if cu.Tier == "" {
		return fmt.Errorf("%w: no tier for customer %q: set customers.tier.default", ErrRow, cu.CustomerId)
	}
	return nil
}
