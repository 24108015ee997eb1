package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/dynamicpb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/devstack"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// principal is one caller of the matrix: a role's token, no token, or a
// token forged with a key the services do not trust.
type principal struct {
	name  string
	role  auth.Role // "" for no token and forged
	token string
}

// TestAccessMatrix calls every RPC of every gRPC service (from the
// generated descriptors) on the running services with each of seven
// principals and checks the outcome against auth.Access: Unauthenticated
// without a valid token, PermissionDenied for a role the table does not
// list, anything else for a listed role. The stack runs with an issuer,
// audience and maximum lifetime configured, as a bank's would.
func TestAccessMatrix(t *testing.T) {
	logs := &lockedBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{Dir: t.TempDir(), AnyPort: true, Logs: logs, Env: map[string]string{
		"CHURNWATCH_AUTH_ISSUER": "https://idp.bank.example/realms/bank", "CHURNWATCH_AUTH_AUDIENCE": "churnwatch",
		"CHURNWATCH_AUTH_MAX_TTL": "12h",
	}})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("stop stack: %v", err)
		}
	})
	mint := func(sub string, role auth.Role, branch string) string {
		tok, err := st.Token(sub, role, branch, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	forged, err := auth.MintWith(foreign, auth.Principal{Subject: "admin-1", Role: auth.RoleAdmin}, time.Hour,
		auth.MintOptions{Issuer: "https://idp.bank.example/realms/bank", Audience: "churnwatch"})
	if err != nil {
		t.Fatal(err)
	}
	principals := []principal{
		{"ingest", auth.RoleIngest, mint("core-banking", auth.RoleIngest, "")},
		{"manager", auth.RoleManager, mint("rm-001", auth.RoleManager, "")},
		{"branch_head br-01", auth.RoleBranchHead, mint("bh-01", auth.RoleBranchHead, "br-01")},
		{"ops", auth.RoleOps, mint("ops-1", auth.RoleOps, "")},
		{"admin", auth.RoleAdmin, mint("admin-1", auth.RoleAdmin, "")},
		{"no token", "", ""},
		{"forged", "", forged},
	}
	servers := map[string][]string{
		"IngestService":     {st.Ingester.GRPCAddr()},
		"RulesAdminService": {st.Rules.GRPCAddr()},
		"KpiService":        {st.Rules.GRPCAddr()},
		"ShadowService":     {st.Rules.GRPCAddr()},
		"AlertService":      {st.Alerts.GRPCAddr()},
		"StatusService":     {st.Ingester.GRPCAddr(), st.Rules.GRPCAddr(), st.Alerts.GRPCAddr()},
	}
	conns := map[string]*grpc.ClientConn{}
	for _, addrs := range servers {
		for _, a := range addrs {
			if conns[a] == nil {
				c, err := client.Dial(a, "", client.TLS{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				conns[a] = c
			}
		}
	}
	methods := auth.Methods()
	if len(methods) < 16 {
		t.Fatalf("only %d methods in the descriptors", len(methods))
	}
	for _, m := range methods {
		addrs, ok := servers[m.Service]
		if !ok {
			t.Errorf("%s: no running service serves %s (add it to this test)", m.FullName, m.Service)
			continue
		}
		for _, addr := range addrs {
			for _, p := range principals {
				code := call(conns[addr], m, p.token)
				var ok bool
				var want string
				switch {
				case p.role == "":
					ok, want = code == codes.Unauthenticated, "Unauthenticated"
				case auth.Allowed(p.role, m.FullName):
					ok, want = code != codes.Unauthenticated && code != codes.PermissionDenied, "not denied"
				default:
					ok, want = code == codes.PermissionDenied, "PermissionDenied"
				}
				if !ok {
					t.Errorf("%s on %s (%s): %v, want %s", p.name, m.FullName, addr, code, want)
				}
			}
		}
	}
	// Every role denial was logged with principal, role and method.
	out := logs.String()
	if !logged(out, map[string]string{"msg": "permission denied", "principal": "rm-001", "role": "manager", "method": "/churnwatch.v1.StatusService/GetStatus"}) {
		t.Error("a manager's denied GetStatus is not logged with principal, role and method")
	}
	for _, p := range principals {
		if p.token != "" && strings.Contains(out, p.token[len(p.token)-20:]) {
			t.Fatalf("the token of %s reached the logs", p.name)
		}
	}

	// Object-level denials: another manager's customer in the rules
	// service, logged with a ref instead of the customer id.
	ingest := cwv1.NewIngestServiceClient(dial(t, st, st.Ingester.GRPCAddr(), "core-banking", auth.RoleIngest, ""))
	if _, err := ingest.UpsertCustomers(ctx, &cwv1.UpsertCustomersRequest{Customers: []*cwv1.IncomingCustomer{
		{CustomerId: "C-ACCESS-1", Tier: "MASS", ManagerId: "rm-002", BranchId: "br-02", DisplayName: "A. Customer"},
	}}); err != nil {
		t.Fatal(err)
	}
	rulesAdmin := cwv1.NewRulesAdminServiceClient(dial(t, st, st.Rules.GRPCAddr(), "admin-1", auth.RoleAdmin, ""))
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := rulesAdmin.GetCustomerRisk(ctx, &cwv1.GetCustomerRiskRequest{CustomerId: "C-ACCESS-1"})
		if err == nil && r.GetKnownCustomer() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rules never learnt the customer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range []principal{principals[1], principals[2]} {
		md := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+p.token)
		_, err := cwv1.NewRulesAdminServiceClient(conns[st.Rules.GRPCAddr()]).GetCustomerRisk(md, &cwv1.GetCustomerRiskRequest{CustomerId: "C-ACCESS-1"})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s on another branch's customer: %v", p.name, err)
		}
	}
	out = logs.String()
	ref := auth.Ref("C-ACCESS-1")
	for _, who := range [][2]string{{"rm-001", "manager"}, {"bh-01", "branch_head"}} {
		if !logged(out, map[string]string{"msg": "customer risk access denied", "principal": who[0], "role": who[1],
			"method": "/churnwatch.v1.RulesAdminService/GetCustomerRisk", "ref": ref}) {
			t.Errorf("denied GetCustomerRisk of %s not logged with its ref", who[0])
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "denied") && strings.Contains(l, "C-ACCESS-1") {
			t.Fatalf("a denial log names the customer: %s", l)
		}
	}
}

// logged reports whether one JSON log line has every field of want.
func logged(out string, want map[string]string) bool {
	for _, l := range strings.Split(out, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		ok := true
		for k, v := range want {
			if s, _ := m[k].(string); s != v {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// call invokes m with an empty request and returns the status code.
func call(conn *grpc.ClientConn, m auth.Method, token string) codes.Code {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	in, out := dynamicpb.NewMessage(m.Input), dynamicpb.NewMessage(m.Output)
	if !m.ClientStream && !m.ServerStream {
		return status.Code(conn.Invoke(ctx, m.FullName, in, out))
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: m.ClientStream, ServerStreams: m.ServerStream}, m.FullName)
	if err != nil {
		return status.Code(err)
	}
	if !m.ClientStream {
		if err := s.SendMsg(in); err != nil {
			return status.Code(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		return status.Code(err)
	}
	// A live stream with nothing to send yet ends at the deadline: not a
	// denial.
	return status.Code(s.RecvMsg(out))
}
