package auth

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

var update = flag.Bool("update", false, "rewrite docs/security-roles.md")

// TestAccessCoversEveryRPC: the table names every method of the .proto
// services, and nothing else.
func TestAccessCoversEveryRPC(t *testing.T) {
	ms := Methods()
	if len(ms) < 16 {
		t.Fatalf("only %d methods found in the descriptors", len(ms))
	}
	seen := map[string]bool{}
	for _, m := range ms {
		seen[m.FullName] = true
		if len(Access[m.FullName]) == 0 {
			t.Errorf("%s: not in auth.Access (every RPC needs a row)", m.FullName)
		}
	}
	for m := range Access {
		if !seen[m] {
			t.Errorf("auth.Access names %s, which no .proto service declares", m)
		}
	}
	// SPEC §6: status for ops and admin only; ingest only publishes.
	for _, r := range []Role{RoleIngest, RoleManager, RoleBranchHead} {
		if Allowed(r, "/churnwatch.v1.StatusService/GetStatus") {
			t.Errorf("%s may read StatusService", r)
		}
	}
	for _, m := range ms {
		if Allowed(RoleIngest, m.FullName) != (m.Service == "IngestService") {
			t.Errorf("ingest on %s: %v", m.FullName, Allowed(RoleIngest, m.FullName))
		}
	}
}

func TestRolesDoc(t *testing.T) {
	path := filepath.Join("..", "..", "..", "docs", "security-roles.md")
	want := RolesMarkdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("docs/security-roles.md is stale: run go test ./auth -run TestRolesDoc -update in services/platform")
	}
}

// TestIdentityDocListsSettings: every token setting is documented.
func TestIdentityDocListsSettings(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "security-identity.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range configSettings() {
		if !strings.Contains(string(b), "`"+s+"`") {
			t.Errorf("docs/security-identity.md does not document %s", s)
		}
	}
}

func TestScope(t *testing.T) {
	bh := Principal{Subject: "bh-1", Role: RoleBranchHead, Branch: "br-01"}
	rm := Principal{Subject: "rm-001", Role: RoleManager}
	ops := Principal{Subject: "ops-1", Role: RoleOps}
	ing := Principal{Subject: "core", Role: RoleIngest}
	for _, c := range []struct {
		p               Principal
		manager, branch string
		want            bool
	}{
		{bh, "rm-9", "br-01", true}, {bh, "rm-001", "br-02", false}, {bh, "", "", false},
		{rm, "rm-001", "br-02", true}, {rm, "rm-002", "br-01", false}, {rm, "", "", false},
		{ops, "", "", true}, {ing, "rm-001", "br-01", false},
	} {
		if got := c.p.Sees(c.manager, c.branch); got != c.want {
			t.Errorf("%s sees (%q, %q) = %v", c.p.Role, c.manager, c.branch, got)
		}
	}
	if r := Ref("C-000123"); len(r) != 12 || strings.Contains(r, "000123") || r != Ref("C-000123") {
		t.Fatalf("ref %q", r)
	}
}

// TestDenialLoggedOnce: a wrong role is PermissionDenied and logged once
// with principal, role and method.
func TestDenialLoggedOnce(t *testing.T) {
	v, mint := newKeyPair(t)
	var logs bytes.Buffer
	ic := UnaryInterceptor(v, Access, slog.New(slog.NewJSONHandler(&logs, nil)))
	tok := mint(Principal{Subject: "rm-001", Role: RoleManager}, time.Hour)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	_, err := ic(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/churnwatch.v1.StatusService/GetStatus"}, func(context.Context, any) (any, error) { return nil, nil })
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("manager on status: %v", err)
	}
	out := logs.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, `"principal":"rm-001"`) || !strings.Contains(out, `"role":"manager"`) ||
		!strings.Contains(out, `"method":"/churnwatch.v1.StatusService/GetStatus"`) || strings.Contains(out, tok[:30]) {
		t.Fatalf("denial log: %q", out)
	}
}
