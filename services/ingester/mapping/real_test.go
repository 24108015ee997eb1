package mapping

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/ingester/validate"
)

// realDir is the export to convert: CHURNWATCH_REALBANK (the whole
// PKDD'99 set, ../shared/data/realbank in this workplace; not committed, it
// has no licence) or the committed sample of its rows in testdata/pkdd99.
func realDir() (dir string, whole bool) {
	if d := os.Getenv("CHURNWATCH_REALBANK"); d != "" {
		return d, true
	}
	return "testdata/pkdd99", false
}

// dataRows counts the records of a ;-separated export with a header.
func dataRows(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")[1:] {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

func dirOpener(dir string) Opener {
	return func(p string) (io.ReadCloser, error) { return os.Open(filepath.Join(dir, p)) }
}

// TestRealExport converts a PKDD'99 export with the shipped mapping: every
// transaction is converted and accepted by the ingester, none rejected.
// With CHURNWATCH_REALBANK set to the whole set it checks its known sizes
// (49,102 transactions, 1,229 customers).
func TestRealExport(t *testing.T) {
	dir, whole := realDir()
	wantEvents := dataRows(t, filepath.Join(dir, "trans.asc"))
	if whole && wantEvents != 49102 {
		t.Fatalf("%s/trans.asc has %d rows, want the 49,102 of the README", dir, wantEvents)
	}
	src, err := os.ReadFile("../../../deploy/mappings/pkdd99-czech.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Convert(dirOpener(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("types: %v; customers %d", out.Types, len(out.Customers))
	rejected := 0
	for _, r := range out.Events {
		if r.Err != nil {
			rejected++
			if rejected < 5 {
				t.Errorf("%s line %d: %v", r.File, r.Line, r.Err)
			}
		}
	}
	// and the ingester accepts every one of them
	now := time.Now()
	for _, r := range out.Events {
		if r.Err == nil {
			if _, verr := validate.Event(r.Value, now); verr != nil {
				rejected++
				if rejected < 5 {
					t.Errorf("%s line %d: ingester rejects %v: %v", r.File, r.Line, r.Value, verr)
				}
			}
		}
	}
	if len(out.Events) != wantEvents || rejected != 0 {
		t.Fatalf("%d events, %d rejected; want %d, 0", len(out.Events), rejected, wantEvents)
	}
	tiers := map[string]int{}
	for _, c := range out.Customers {
		if c.Err != nil {
			t.Errorf("customer line %d: %v", c.Line, c.Err)
		}
		if _, verr := validate.Customer(c.Value, now); verr != nil {
			t.Errorf("customer line %d: ingester rejects %v: %v", c.Line, c.Value, verr)
		}
		tiers[c.Value.Tier]++
	}
	t.Logf("tiers %v", tiers)
	if len(out.Customers) == 0 || whole && len(out.Customers) != 1229 {
		t.Fatalf("%d customers, want one owner per account with transactions (1,229 in the whole set)", len(out.Customers))
	}
}
