package backtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/churnwatch/churnwatch/services/ingester/format"
	"github.com/churnwatch/churnwatch/services/rules/engine"
)

// ReadEvents decodes account events as the ingester's decoders do —
// NDJSON, CSV or a JSON array, picked from name's extension or the first
// bytes — and adds each record to h as it is read, so only the scored form
// of each event is held. An undecodable record is rejected with its line;
// only an input unreadable as a whole is an error.
func (h *History) ReadEvents(name string, r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	kind := format.Detect(name, br)
	return each(kind, format.Events(kind, br), h.AddEvent)
}

// ReadCustomers decodes customer profiles (NDJSON or a JSON array) into h.
func (h *History) ReadCustomers(name string, r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	kind := format.NDJSON
	if format.Detect(name, br) == format.JSONArray {
		kind = format.JSONArray
	}
	return each(kind, format.Customers(kind, br), h.AddCustomer)
}

func each[T any](kind format.Kind, rd format.Reader[T], add func(Record[T])) error {
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		line := rec.Line
		if kind == format.JSONArray {
			line = rec.Index + 1 // as churnctl ingest reports it
		}
		add(Record[T]{Line: line, Value: rec.Value, Err: rec.Err})
	}
}

// Label is the ground truth for one customer (labels.ndjson of `churnctl
// simulate`).
type Label struct {
	CustomerID string
	Archetype  string
	Churned    bool
	// ChurnDate is midnight UTC of the churn date; zero when not churned.
	ChurnDate time.Time
}

// ReadLabels reads labels.ndjson: {"customerId","archetype","churned",
// "churnDate":"YYYY-MM-DD"} per line. Labels are ground truth, so any bad
// line is an error naming it.
func ReadLabels(r io.Reader) ([]Label, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), format.MaxLine)
	var out []Label
	for n := 1; sc.Scan(); n++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var raw struct {
			CustomerID string `json:"customerId"`
			Archetype  string `json:"archetype"`
			Churned    bool   `json:"churned"`
			ChurnDate  string `json:"churnDate"`
		}
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, fmt.Errorf("labels line %d: %w", n, err)
		}
		if raw.CustomerID == "" {
			return nil, fmt.Errorf("labels line %d: no customerId", n)
		}
		l := Label{CustomerID: raw.CustomerID, Archetype: raw.Archetype, Churned: raw.Churned}
		if raw.Churned {
			d, err := time.Parse(time.DateOnly, raw.ChurnDate)
			if err != nil {
				return nil, fmt.Errorf("labels line %d: churned without a churnDate YYYY-MM-DD: %w", n, err)
			}
			l.ChurnDate = d
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read labels: %w", err)
	}
	return out, nil
}

// ReadThresholds reads a threshold set: the SPEC defaults changed by lines
// `RULE.FIELD[.TIER][.CURRENCY]=VALUE` or `KEY: VALUE` (so a flat YAML map
// works; blank lines and # comments allowed), or the
// JSON object `churnctl thresholds show --json` prints
// ({"version":N,"settings":{"KEY":"VALUE",…}}). The result is validated.
func ReadThresholds(r io.Reader) (engine.Thresholds, error) {
	th := engine.DefaultThresholds()
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return th, fmt.Errorf("read thresholds: %w", err)
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		var set struct {
			Version  int64             `json:"version"`
			Settings map[string]string `json:"settings"`
		}
		if err := json.Unmarshal(t, &set); err != nil {
			return th, fmt.Errorf("%w: thresholds JSON: %v", ErrBadThresholds, err)
		}
		keys := make([]string, 0, len(set.Settings))
		for k := range set.Settings {
			keys = append(keys, k)
		}
		sort.Strings(keys) // "KEY" before "KEY.TIER": the per-tier value wins
		for _, k := range keys {
			if err := th.Set(k, set.Settings[k]); err != nil {
				return th, fmt.Errorf("%w: %v", ErrBadThresholds, err)
			}
		}
		if set.Version > 0 {
			th.Version = set.Version
		}
	} else {
		for n, line := range strings.Split(string(b), "\n") {
			line, _, _ = strings.Cut(line, "#")
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				// a YAML map of the same keys: "RULE.FIELD[.TIER][.CUR]: VALUE"
				k, v, ok = strings.Cut(line, ":")
				v = strings.Trim(strings.TrimSpace(v), `"'`)
			}
			if !ok {
				return th, fmt.Errorf("%w: line %d: want RULE.FIELD[.TIER][.CURRENCY]=VALUE (or KEY: VALUE)", ErrBadThresholds, n+1)
			}
			if err := th.Set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
				return th, fmt.Errorf("%w: line %d: %v", ErrBadThresholds, n+1, err)
			}
		}
	}
	if err := th.Validate(); err != nil {
		return th, fmt.Errorf("%w: %v", ErrBadThresholds, err)
	}
	return th, nil
}
