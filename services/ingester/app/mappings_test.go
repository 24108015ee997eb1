package app_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/churnwatch/churnwatch/services/ingester/app"
	"github.com/churnwatch/churnwatch/services/ingester/mapping"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

// The HTTP intake takes a bank export in its own format by naming a
// configured mapping: the shipped PKDD'99 mapping, the committed sample of
// its transaction table as the body, the account and disposition tables it
// joins from the data directory. Every row gets the same fate as through
// churnctl ingest --mapping (same converter), a bad row is rejected with its
// line, and the good rows of the same body are still accepted.
func TestHTTPIntakeWithMapping(t *testing.T) {
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(root, "services/ingester/mapping/testdata/pkdd99")
	s := newStack(t)
	cfg := s.config(t)
	cfg.MappingsDir = filepath.Join(root, "deploy/mappings")
	cfg.MappingData = data
	a := start(t, cfg)
	url := "http://" + a.HTTPAddr()
	tok := s.keys.Token(t, "core-banking", auth.RoleIngest, "")

	trans, err := os.ReadFile(filepath.Join(data, "trans.asc"))
	if err != nil {
		t.Fatal(err)
	}
	// what the converter itself makes of the sample (churnctl's path)
	src, err := os.ReadFile(filepath.Join(root, "deploy/mappings/pkdd99-czech.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := mapping.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	conv, err := m.ConvertEvents(func(p string) (io.ReadCloser, error) {
		return os.Open(filepath.Join(data, p))
	})
	if err != nil {
		t.Fatal(err)
	}
	good := 0
	for _, r := range conv.Events {
		if r.Err == nil {
			good++
		}
	}
	if good == 0 {
		t.Fatal("the sample converts to no events")
	}

	badLine := strings.Count(string(trans), "\n") + 1
	body := append(append([]byte{}, trans...), []byte("999999;2378;931332;\"PRIJEM\";\"VKLAD\";700.00;700.00;\"\";;\n")...)
	code, _, resp := post(t, url+"/v1/events?mapping=pkdd99-czech", tok, "text/csv", body)
	if code != 200 {
		t.Fatalf("mapped body: %d %s", code, resp)
	}
	r := decode(t, resp)
	if r.Accepted != good || r.Rejected != len(conv.Events)-good+1 {
		t.Fatalf("mapped body: accepted %d rejected %d, want %d and %d: %s", r.Accepted, r.Rejected, good, len(conv.Events)-good+1, resp)
	}
	last := r.Results[len(r.Results)-1]
	if last.Status != "rejected" || last.Line != badLine || !strings.Contains(last.Reason, "date") {
		t.Fatalf("bad row: %+v, want rejected at line %d naming the date", last, badLine)
	}
	// the same body again: every event is a duplicate, nothing new
	_, _, resp = post(t, url+"/v1/events?mapping=pkdd99-czech", tok, "text/csv", trans)
	if r := decode(t, resp); r.Duplicates != good || r.Accepted != 0 {
		t.Fatalf("replayed body: %s", resp)
	}

	code, _, resp = post(t, url+"/v1/events?mapping=nope", tok, "text/csv", trans)
	if code != 400 || !strings.Contains(string(resp), "pkdd99-czech") {
		t.Fatalf("unknown mapping: %d %s (want 400 naming the configured ones)", code, resp)
	}
	code, _, resp = post(t, url+"/v1/customers?mapping=pkdd99-czech", tok, "text/csv", trans)
	if code != 400 || !strings.Contains(string(resp), "average_balance") {
		t.Fatalf("customers of a mapping tiering by balance: %d %s (want 400 saying why)", code, resp)
	}
	code, _, resp = post(t, url+"/v1/events?mapping=pkdd99-czech", tok, "text/csv", []byte("a;b\n1;2\n"))
	if code != 400 || !strings.Contains(string(resp), "is not in trans.asc") {
		t.Fatalf("body without the mapping's columns: %d %s (want 400 naming a missing column)", code, resp)
	}
}

// A mapping that does not validate stops the ingester at start, naming the
// file and the line.
func TestBadMappingStopsStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bank.yaml"), []byte("mapping: 1\nname: bank\nfiles: {}\nevents:\n  file: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStack(t)
	cfg := s.config(t)
	cfg.MappingsDir = dir
	_, err := app.New(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "bank.yaml") || !strings.Contains(err.Error(), "line") {
		t.Fatalf("start with a bad mapping: %v", err)
	}
}
