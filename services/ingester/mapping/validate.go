package mapping

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// SPEC §2 names, checked here so a typo fails at load, not on every row.
var (
	eventTypes = []string{"DEPOSIT", "TRANSFER_IN", "SALARY", "WITHDRAWAL", "TRANSFER_OUT", "CARD_PAYMENT",
		"INTEREST", "FEE", "LOGIN", "ACCOUNT_OPENED", "ACCOUNT_CLOSED", "PRODUCT_CANCELLED", "COMPLAINT"}
	moneyTypes = []string{"DEPOSIT", "TRANSFER_IN", "SALARY", "WITHDRAWAL", "TRANSFER_OUT", "CARD_PAYMENT", "INTEREST", "FEE"}
	channels   = []string{"BRANCH", "MOBILE", "ONLINE", "ATM", "PHONE"}
	tiers      = []string{"HIGH_NET_WORTH", "POTENTIAL", "MASS", "BASIC"}
)

func has(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

type problems []Problem

func (p *problems) add(line int, format string, a ...any) {
	*p = append(*p, Problem{Line: line, Msg: fmt.Sprintf(format, a...)})
}

func (m *Mapping) validate() []Problem {
	var ps problems
	if m.Version != 1 {
		ps.add(1, "mapping: 1 is required (the version of this format), got %d", m.Version)
	}
	if m.Currency != "" && (len(m.Currency) != 3 || strings.ToUpper(m.Currency) != m.Currency) {
		ps.add(1, "currency %q: an ISO 4217 code such as CZK", m.Currency)
	}
	m.loc = time.UTC
	if m.Timezone != "" {
		loc, err := time.LoadLocation(m.Timezone)
		if err != nil {
			ps.add(1, "timezone %q: %v (an IANA name such as Europe/Prague, or UTC)", m.Timezone, err)
		} else {
			m.loc = loc
		}
	}
	if len(m.Files) == 0 {
		ps.add(1, "files: name at least one input file")
	}
	names := make([]string, 0, len(m.Files))
	for name := range m.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := m.Files[name]
		if f == nil {
			ps.add(1, "files.%s: empty", name)
			continue
		}
		f.validate(name, &ps)
	}
	lnames := make([]string, 0, len(m.Lookups))
	for name := range m.Lookups {
		lnames = append(lnames, name)
	}
	sort.Strings(lnames)
	for _, name := range lnames {
		l := m.Lookups[name]
		if l == nil {
			ps.add(1, "lookups.%s: empty", name)
			continue
		}
		if _, ok := m.Files[l.File]; !ok {
			ps.add(l.Line, "lookups.%s: file %q is not under files (%s)", name, l.File, strings.Join(names, ", "))
		}
		if l.Key == "" {
			ps.add(l.Line, "lookups.%s: key (the column rows are found by) is required", name)
		}
		if l.On == "" {
			l.On = l.Key
		}
		if strings.Contains(name, ".") {
			ps.add(l.Line, "lookups.%s: a lookup name cannot contain '.'", name)
		}
	}
	if m.Events == nil {
		ps.add(1, "events: the mapping of account events is required")
	} else {
		m.Events.validate(m, names, &ps)
	}
	if c := m.Customer; c != nil {
		if _, ok := m.Files[c.File]; !ok {
			ps.add(c.Line, "customers: file %q is not under files (%s)", c.File, strings.Join(names, ", "))
		}
		m.template(&c.ID, "customers.id", true, &ps)
		m.template(&c.Branch, "customers.branch", false, &ps)
		m.template(&c.Manager, "customers.manager", false, &ps)
		m.template(&c.DisplayName, "customers.display_name", false, &ps)
		c.Tier.validate(&ps)
	}
	return ps
}

func (f *FileSpec) validate(name string, ps *problems) {
	if f.Path == "" {
		ps.add(f.Line, "files.%s: path is required", name)
	}
	switch f.Format {
	case "", "delimited", "ndjson":
	default:
		ps.add(f.Line, "files.%s: format %q: delimited or ndjson", name, f.Format)
	}
	d := f.Delimiter
	if d == "" {
		d = ","
	}
	if d == `\t` {
		d = "\t"
	}
	if len(d) != 1 || d == "\n" || d == "\r" {
		ps.add(f.Line, "files.%s: delimiter %q: one character such as \",\", \";\" or \"\\t\"", name, f.Delimiter)
	} else {
		f.delim = d[0]
	}
	f.quote = '"'
	if f.Quote != nil {
		switch q := *f.Quote; len(q) {
		case 0:
			f.quote = 0
		case 1:
			f.quote = q[0]
		default:
			ps.add(f.Line, "files.%s: quote %q: one character, or \"\" for none", name, q)
		}
	}
	if f.quote != 0 && f.quote == f.delim {
		ps.add(f.Line, "files.%s: quote and delimiter are the same character", name)
	}
	if f.Header != nil && !*f.Header && len(f.Columns) == 0 && f.Format != "ndjson" {
		ps.add(f.Line, "files.%s: header: false needs columns: [name, …]", name)
	}
}

func (e *EventSpec) validate(m *Mapping, files []string, ps *problems) {
	if _, ok := m.Files[e.File]; !ok {
		ps.add(e.Line, "events: file %q is not under files (%s)", e.File, strings.Join(files, ", "))
	}
	m.template(&e.ID, "events.id", true, ps)
	m.template(&e.Customer, "events.customer", true, ps)
	m.template(&e.Account, "events.account", true, ps)
	m.template(&e.Currency, "events.currency", false, ps)
	m.template(&e.Sentiment, "events.sentiment", false, ps)
	e.OccurredAt.validate(ps)
	if e.Amount.Column == "" {
		ps.add(e.Line, "events.amount: the amount column is required")
	}
	checkSign(&e.Amount, "positive", "events.amount", ps)
	if e.Balance != nil {
		checkSign(e.Balance, "keep", "events.balance_after", ps)
	}
	if e.Number.Decimal == "" {
		e.Number.Decimal = "."
	}
	if len(e.Number.Decimal) != 1 || strings.Contains(e.Number.Thousands, e.Number.Decimal) {
		ps.add(e.Line, "events.number: decimal %q must be one character not among thousands %q", e.Number.Decimal, e.Number.Thousands)
	}
	if len(e.Types) == 0 {
		ps.add(e.Line, "events.types: the code table (when → type) is required")
	}
	money := m.Currency != "" || e.Currency.Text != ""
	for i, r := range e.Types {
		if r == nil {
			ps.add(e.Line, "events.types[%d]: empty", i)
			continue
		}
		switch {
		case r.Type != "" && r.Reject != "":
			ps.add(r.Line, "events.types[%d]: type and reject both set: a row is mapped or rejected", i)
		case r.Type == "" && r.Reject == "":
			ps.add(r.Line, "events.types[%d]: set type (one of %s) or reject: \"reason\"", i, strings.Join(eventTypes, ", "))
		case r.Type != "" && !has(eventTypes, r.Type):
			ps.add(r.Line, "events.types[%d]: type %q is not a SPEC §2 type (%s)", i, r.Type, strings.Join(eventTypes, ", "))
		case has(moneyTypes, r.Type) && !money:
			ps.add(r.Line, "events.types[%d]: %s carries an amount: set currency at the top or events.currency", i, r.Type)
		}
		if r.Channel != "" && !has(channels, r.Channel) {
			ps.add(r.Line, "events.types[%d]: channel %q: one of %s", i, r.Channel, strings.Join(channels, ", "))
		}
		m.template(&r.CounterpartyBank, fmt.Sprintf("events.types[%d].counterparty_bank", i), false, ps)
		m.condition(&r.When, fmt.Sprintf("events.types[%d].when", i), ps)
	}
	switch e.Unmatched {
	case "", "reject":
	default:
		ps.add(e.unmatchedAt, "events.unmatched %q: only reject (a row no rule matches is rejected with its codes; add a rule to map it)", e.Unmatched)
	}
}

func checkSign(n *NumberSpec, def, where string, ps *problems) {
	if n.Sign == "" {
		n.Sign = def
	}
	switch n.Sign {
	case "keep", "abs", "positive":
	default:
		ps.add(n.Line, "%s.sign %q: keep, abs or positive", where, n.Sign)
	}
}

var dateTokens = []struct{ tok, layout string }{
	{"YYYY", "2006"}, {"YY", "06"}, {"MM", "01"}, {"DD", "02"}, {"hh", "15"}, {"mm", "04"}, {"ss", "05"},
}

func (d *DateSpec) validate(ps *problems) {
	if d.Column == "" {
		ps.add(d.Line, "events.occurred_at: column is required")
	}
	switch f := d.Format; {
	case f == "" || strings.EqualFold(f, "rfc3339"):
		d.layout = time.RFC3339
	default:
		var b strings.Builder
		for i := 0; i < len(f); {
			matched := false
			for _, t := range dateTokens {
				if strings.HasPrefix(f[i:], t.tok) {
					b.WriteString(t.layout)
					i += len(t.tok)
					matched = true
					break
				}
			}
			if !matched {
				c := f[i]
				if c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' {
					ps.add(d.Line, "events.occurred_at.format %q: unknown token at %q (use YYYY YY MM DD hh mm ss and separators)", f, f[i:])
					return
				}
				b.WriteByte(c)
				i++
			}
		}
		d.layout = b.String()
		if !strings.Contains(d.layout, "06") || !strings.Contains(d.layout, "01") || !strings.Contains(d.layout, "02") {
			ps.add(d.Line, "events.occurred_at.format %q: needs a year, a month and a day", f)
		}
	}
	if d.Time != "" {
		t, err := time.Parse("15:04", d.Time)
		if err != nil {
			ps.add(d.Line, "events.occurred_at.time %q: hh:mm", d.Time)
		}
		d.hour, d.minute = t.Hour(), t.Minute()
	}
}

func (t *TierRule) validate(ps *problems) {
	n := 0
	if t.Constant != "" {
		n++
		if !has(tiers, t.Constant) {
			ps.add(t.Line, "customers.tier %q: one of %s", t.Constant, strings.Join(tiers, ", "))
		}
	}
	if t.Column != "" {
		n++
		for k, v := range t.Map {
			if !has(tiers, v) {
				ps.add(t.Line, "customers.tier.map[%s] = %q: one of %s", k, v, strings.Join(tiers, ", "))
			}
		}
	}
	if len(t.AverageBalance) > 0 {
		n++
		for i, b := range t.AverageBalance {
			if !has(tiers, b.Tier) {
				ps.add(t.Line, "customers.tier.average_balance[%d].tier %q: one of %s", i, b.Tier, strings.Join(tiers, ", "))
			}
			if b.Min == nil && i != len(t.AverageBalance)-1 {
				ps.add(t.Line, "customers.tier.average_balance[%d]: only the last band may omit min", i)
			}
			if i > 0 && b.Min != nil && t.AverageBalance[i-1].Min != nil && *b.Min >= *t.AverageBalance[i-1].Min {
				ps.add(t.Line, "customers.tier.average_balance[%d]: bands go from the highest min down", i)
			}
		}
	}
	if n > 1 {
		ps.add(t.Line, "customers.tier: one of constant, column (with map) or average_balance")
	}
	if t.Default != "" && !has(tiers, t.Default) {
		ps.add(t.Line, "customers.tier.default %q: one of %s", t.Default, strings.Join(tiers, ", "))
	}
}

// template compiles t and checks that its lookups exist.
func (m *Mapping) template(t *Template, where string, required bool, ps *problems) {
	if t.Text == "" {
		if required {
			ps.add(t.Line, "%s is required (a template such as \"C{client_id}\")", where)
		}
		return
	}
	s := t.Text
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '{' && i+1 < len(s) && s[i+1] == '{', c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte(c)
			i++
		case c == '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				ps.add(t.Line, "%s %q: unclosed {", where, s)
				return
			}
			ref := strings.TrimSpace(s[i+1 : i+j])
			p := part{lit: lit.String(), column: ref}
			lit.Reset()
			if lk, col, ok := strings.Cut(ref, "."); ok {
				if _, found := m.Lookups[lk]; !found {
					ps.add(t.Line, "%s %q: no lookup %q (define it under lookups)", where, s, lk)
				}
				p.lookup, p.column = lk, col
			}
			if p.column == "" {
				ps.add(t.Line, "%s %q: empty {}", where, s)
			}
			t.parts = append(t.parts, p)
			i += j
		case c == '}':
			ps.add(t.Line, "%s %q: } without { (write }} for a brace)", where, s)
			return
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, part{lit: lit.String()})
	}
}

func (m *Mapping) condition(c *Condition, where string, ps *problems) {
	for _, t := range c.Tests {
		if lk, _, ok := strings.Cut(t.Column, "."); ok {
			if _, found := m.Lookups[lk]; !found {
				ps.add(c.Line, "%s: column %q: no lookup %q", where, t.Column, lk)
			}
		}
	}
}
