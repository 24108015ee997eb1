package format

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
)

// CSVColumns is the SPEC §2 header of event CSV files.
var CSVColumns = []string{"event_id", "customer_id", "account_id", "occurred_at", "type", "amount",
	"currency", "counterparty_bank", "balance_after", "channel", "sentiment"}

// numericColumns may start with "-" (a negative balance or sentiment) and
// are checked as decimals by validation; every other column is text.
var numericColumns = map[int]bool{5: true, 8: true, 10: true}

// formulaErr refuses a CSV text field that a spreadsheet would run as a
// formula (CSV injection, OWASP): one starting with = + - or @, also
// after leading blanks.
func formulaErr(col int, f string) error {
	if numericColumns[col] {
		return nil
	}
	t := strings.TrimLeft(f, " \t")
	if t == "" || !strings.ContainsRune("=+-@", rune(t[0])) {
		return nil
	}
	return &validate.Error{Field: CSVColumns[col], Code: validate.CodeCSVFormula,
		Msg: fmt.Sprintf("starts with %q: a spreadsheet would run it as a formula", t[0])}
}

var requiredColumns = []string{"event_id", "customer_id", "account_id", "occurred_at", "type"}

// ErrCSVHeader means the first line of a CSV input is not a usable header.
var ErrCSVHeader = errors.New("csv header")

// csvEvents reads event CSV: a header row naming the SPEC columns (any
// order; the optional ones may be left out), then one event per line.
// Quoted fields follow RFC 4180 but may not span lines, so that one bad
// line never swallows the lines after it and line numbers stay exact.
type csvEvents struct {
	lines  *lines
	cols   []int // field position → column index in CSVColumns
	width  int
	index  int
	fields []string
	err    error
}

func (c *csvEvents) header() error {
	for {
		b, _, err := c.lines.next()
		if errors.Is(err, errLineTooLong) {
			return fmt.Errorf("%w: line 1 too long", ErrCSVHeader)
		}
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) == "" {
			continue
		}
		names, err := splitCSV(string(b), nil)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCSVHeader, err)
		}
		seen := map[string]bool{}
		for _, n := range names {
			n = strings.ToLower(strings.TrimSpace(n))
			idx := -1
			for i, col := range CSVColumns {
				if col == n {
					idx = i
				}
			}
			if idx < 0 {
				return fmt.Errorf("%w: unknown column %q (want %s)", ErrCSVHeader, short(n), strings.Join(CSVColumns, ","))
			}
			if seen[n] {
				return fmt.Errorf("%w: column %q twice", ErrCSVHeader, n)
			}
			seen[n] = true
			c.cols = append(c.cols, idx)
		}
		for _, r := range requiredColumns {
			if !seen[r] {
				return fmt.Errorf("%w: column %q missing", ErrCSVHeader, r)
			}
		}
		c.width = len(c.cols)
		return nil
	}
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func (c *csvEvents) Next() (Record[*cwv1.IncomingEvent], error) {
	if c.err != nil {
		return Record[*cwv1.IncomingEvent]{}, c.err
	}
	if c.cols == nil {
		if err := c.header(); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: empty input", ErrCSVHeader)
			}
			c.err = err
			return Record[*cwv1.IncomingEvent]{}, err
		}
	}
	for {
		b, line, err := c.lines.next()
		if errors.Is(err, errLineTooLong) {
			rec := Record[*cwv1.IncomingEvent]{Line: line, Index: c.index, Value: &cwv1.IncomingEvent{}, Err: decodeErr("line longer than 1 MiB")}
			c.index++
			return rec, nil
		}
		if err != nil {
			c.err = err
			return Record[*cwv1.IncomingEvent]{}, err
		}
		s := string(b)
		if strings.TrimSpace(s) == "" {
			continue
		}
		rec := Record[*cwv1.IncomingEvent]{Line: line, Index: c.index, Value: &cwv1.IncomingEvent{}}
		c.index++
		c.fields, err = splitCSV(s, c.fields[:0])
		if err != nil {
			rec.Err = decodeErr("not valid CSV: " + err.Error())
			return rec, nil
		}
		if len(c.fields) != c.width {
			// Keep what can be kept so the error names the event.
			if len(c.fields) > 0 && c.cols[0] == 0 {
				rec.Value.EventId = c.fields[0]
			}
			rec.Err = decodeErr(fmt.Sprintf("%d fields, the header has %d", len(c.fields), c.width))
			return rec, nil
		}
		ev := rec.Value
		for i, f := range c.fields {
			if err := formulaErr(c.cols[i], f); err != nil && rec.Err == nil {
				rec.Err = err
			}
			switch c.cols[i] {
			case 0:
				ev.EventId = f
			case 1:
				ev.CustomerId = f
			case 2:
				ev.AccountId = f
			case 3:
				ev.OccurredAt = f
			case 4:
				ev.Type = f
			case 5:
				ev.Amount = f
			case 6:
				ev.Currency = f
			case 7:
				ev.CounterpartyBank = f
			case 8:
				ev.BalanceAfter = f
			case 9:
				ev.Channel = f
			case 10:
				ev.Sentiment = f
			}
		}
		return rec, nil
	}
}

// splitCSV splits one CSV line into fields, appending to dst. Unquoted
// fields are trimmed of surrounding spaces; quoted fields keep them and
// use "" for a quote. Invalid UTF-8 is replaced, as protobuf strings must
// be valid.
func splitCSV(line string, dst []string) ([]string, error) {
	if !utf8.ValidString(line) {
		line = strings.ToValidUTF8(line, "\uFFFD")
	}
	i := 0
	for {
		k := i
		for k < len(line) && (line[k] == ' ' || line[k] == '\t') {
			k++
		}
		if k < len(line) && line[k] == '"' {
			i = k + 1
			var sb strings.Builder
			for {
				j := strings.IndexByte(line[i:], '"')
				if j < 0 {
					return dst, fmt.Errorf("field %d: quote not closed", len(dst)+1)
				}
				sb.WriteString(line[i : i+j])
				i += j + 1
				if i < len(line) && line[i] == '"' {
					sb.WriteByte('"')
					i++
					continue
				}
				break
			}
			dst = append(dst, sb.String())
			rest := strings.TrimLeft(line[i:], " \t")
			i = len(line) - len(rest)
			if i == len(line) {
				return dst, nil
			}
			if line[i] != ',' {
				return dst, fmt.Errorf("field %d: text after the closing quote", len(dst))
			}
			i++
			continue
		}
		j := strings.IndexByte(line[i:], ',')
		end := len(line)
		if j >= 0 {
			end = i + j
		}
		f := strings.TrimSpace(line[i:end])
		if strings.IndexByte(f, '"') >= 0 {
			return dst, fmt.Errorf("field %d: quote inside an unquoted field", len(dst)+1)
		}
		dst = append(dst, f)
		if j < 0 {
			return dst, nil
		}
		i = end + 1
	}
}
