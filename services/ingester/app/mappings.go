package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/mapping"
)

// mappings are the bank exports the HTTP intake takes in their own format:
// POST /v1/events?mapping=NAME (and /v1/customers?mapping=NAME) with the
// export's events (or customer) file as the body. Each NAME.yaml in
// CHURNWATCH_INGEST_MAPPINGS is one mapping (the same file churnctl ingest
// --mapping reads); the lookup tables it joins (an account's owner, its
// branch) are read from CHURNWATCH_INGEST_MAPPING_DATA on every request.
type mappings struct {
	byName map[string]*mapping.Mapping
	data   string
}

// mappingFile tells a mapping (top-level "mapping: 1") from the other YAML
// files a deployment keeps beside it.
var mappingFile = regexp.MustCompile(`(?m)^mapping:`)

// loadMappings reads and validates every *.yaml of dir ("" = none). A
// mapping that does not validate stops the start with its file and line.
func loadMappings(dir, data string) (*mappings, error) {
	ms := &mappings{byName: map[string]*mapping.Mapping{}, data: data}
	if dir == "" {
		return ms, nil
	}
	if ms.data == "" {
		ms.data = dir
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("CHURNWATCH_INGEST_MAPPINGS %s: %w", dir, err)
	}
	var errs []error
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("CHURNWATCH_INGEST_MAPPINGS: %w", err))
			continue
		}
		if !mappingFile.Match(src) {
			continue // another YAML file beside the mappings (thresholds, receivers)
		}
		m, err := mapping.Load(src)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		name := m.Name
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(f), ".yaml")
		}
		if _, dup := ms.byName[name]; dup {
			errs = append(errs, fmt.Errorf("%s: a second mapping named %q: give each a unique name", f, name))
			continue
		}
		ms.byName[name] = m
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if st, err := os.Stat(ms.data); len(ms.byName) > 0 && (err != nil || !st.IsDir()) {
		return nil, fmt.Errorf("CHURNWATCH_INGEST_MAPPING_DATA %s: not a directory (it holds the lookup tables the mappings join)", ms.data)
	}
	return ms, nil
}

func (ms *mappings) names() []string {
	out := make([]string, 0, len(ms.byName))
	for n := range ms.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// get finds a mapping by the request's ?mapping= value.
func (ms *mappings) get(name string) (*mapping.Mapping, error) {
	if m, ok := ms.byName[name]; ok {
		return m, nil
	}
	if len(ms.byName) == 0 {
		return nil, &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("mapping %q: this ingester has no mappings (set CHURNWATCH_INGEST_MAPPINGS to a directory of mapping YAML files)", name)}
	}
	return nil, &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("unknown mapping %q: configured are %s", name, strings.Join(ms.names(), ", "))}
}

// opener serves the body as the file named bodyFile and every other file
// of the mapping from the data directory (never outside it).
func (ms *mappings) opener(m *mapping.Mapping, bodyFile string, body []byte) mapping.Opener {
	bodyPath := m.Files[bodyFile].Path
	return func(path string) (io.ReadCloser, error) {
		if path == bodyPath {
			return io.NopCloser(bytes.NewReader(body)), nil
		}
		if !filepath.IsLocal(path) {
			return nil, fmt.Errorf("lookup file %s is outside CHURNWATCH_INGEST_MAPPING_DATA", path)
		}
		return os.Open(filepath.Join(ms.data, path))
	}
}

// mappedEvents converts a body in the bank's own format with the named
// mapping. Rows the mapping rejects keep their line and reason; a problem
// with the body as a whole (no header, a missing column) is a 400.
func (a *App) mappedEvents(name string, body []byte) ([]decoded[*cwv1.IncomingEvent], error) {
	m, err := a.mappings.get(name)
	if err != nil {
		return nil, err
	}
	out, err := m.ConvertEvents(a.mappings.opener(m, m.Events.File, body))
	if err != nil {
		return nil, &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("mapping %s: %v", name, err)}
	}
	return fromRecords(out.Events), nil
}

// mappedCustomers is mappedEvents for the customer file. A mapping whose
// customers depend on the events (tier by average balance) is refused:
// churnctl ingest --mapping converts both together.
func (a *App) mappedCustomers(name string, body []byte) ([]decoded[*cwv1.IncomingCustomer], error) {
	m, err := a.mappings.get(name)
	if err != nil {
		return nil, err
	}
	if m.Customer == nil || m.CustomersNeedEvents() {
		_, err := m.ConvertCustomers(nil)
		return nil, &httpError{status: http.StatusBadRequest, msg: err.Error()}
	}
	out, err := m.ConvertCustomers(a.mappings.opener(m, m.Customer.File, body))
	if err != nil {
		return nil, &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("mapping %s: %v", name, err)}
	}
	return fromRecords(out.Customers), nil
}

func fromRecords[T any](recs []mapping.Record[T]) []decoded[T] {
	out := make([]decoded[T], len(recs))
	for i, r := range recs {
		out[i] = decoded[T]{line: r.Line, value: r.Value, err: r.Err}
	}
	return out
}
