package auth

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/churnwatch/churnwatch/services/platform/config"
)

// Method is one RPC as the generated descriptors (proto/gen/go) declare it.
type Method struct {
	FullName     string // /churnwatch.v1.Service/Method
	Service      string // AlertService
	Name         string
	ClientStream bool
	ServerStream bool
	Input        protoreflect.MessageDescriptor
	Output       protoreflect.MessageDescriptor
}

// ProtoPackage is the package of churnwatch's gRPC services.
const ProtoPackage = "churnwatch.v1"

// Methods lists every method of every gRPC service of ProtoPackage, by
// service then declaration order.
func Methods() []Method {
	var out []Method
	protoregistry.GlobalFiles.RangeFilesByPackage(ProtoPackage, func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				out = append(out, Method{
					FullName: fmt.Sprintf("/%s/%s", sd.FullName(), md.Name()), Service: string(sd.Name()), Name: string(md.Name()),
					ClientStream: md.IsStreamingClient(), ServerStream: md.IsStreamingServer(), Input: md.Input(), Output: md.Output(),
				})
			}
		}
		return true
	})
	slices.SortStableFunc(out, func(a, b Method) int { return strings.Compare(a.Service, b.Service) })
	return out
}

// Allowed reports whether role may call the method according to Access.
func Allowed(role Role, fullMethod string) bool { return slices.Contains(Access[fullMethod], role) }

// RolesMarkdown renders the role × RPC matrix of Access and the scope
// table: docs/security-roles.md (checked current by a test; regenerate
// with `go test ./auth -run TestRolesDoc -update` in services/platform).
func RolesMarkdown() string {
	var b strings.Builder
	b.WriteString(`# churnwatch roles and access

<!-- Generated from auth.Access (services/platform/auth/policy.go) by
     go test ./auth -run TestRolesDoc -update (in services/platform). Do not edit. -->

Every RPC except health and reflection needs ` + "`authorization: Bearer <JWT>`" + `
(see [security-identity.md](security-identity.md)). One table in
` + "`services/platform/auth/policy.go`" + ` decides who may call what; every service's
interceptor enforces it and a test calls every RPC of the running services with
each role, no token and a forged token against this matrix.

- no token, or a token that fails verification (signature, issuer, audience,
  lifetime): ` + "`UNAUTHENTICATED`" + ` (HTTP 401);
- a role not marked below: ` + "`PERMISSION_DENIED`" + ` (HTTP 403);
- a marked role: the call proceeds; what it returns is narrowed by the role's
  scope (second table), and an object outside the scope is again
  ` + "`PERMISSION_DENIED`" + `.

Every denial is logged once (` + "`permission denied`" + `, ` + "`alert access denied`" + `,
` + "`customer risk access denied`" + `) with principal, role, method, reason and
` + "`ref`" + ` — the first 12 hex digits of the SHA-256 of the customer or alert id,
never the id itself nor the token.

## Role × RPC

`)
	b.WriteString("| RPC |")
	for _, r := range Roles {
		fmt.Fprintf(&b, " %s |", r)
	}
	b.WriteString("\n|---|")
	for range Roles {
		b.WriteString(":-:|")
	}
	b.WriteString("\n")
	for _, m := range Methods() {
		kind := ""
		switch {
		case m.ClientStream && m.ServerStream:
			kind = " (bidi stream)"
		case m.ClientStream:
			kind = " (client stream)"
		case m.ServerStream:
			kind = " (server stream)"
		}
		fmt.Fprintf(&b, "| `%s.%s`%s |", m.Service, m.Name, kind)
		for _, r := range Roles {
			if Allowed(r, m.FullName) {
				b.WriteString(" ✓ |")
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("| HTTP `POST /v1/events`, `POST /v1/customers` (ingester) |")
	for _, r := range Roles {
		if slices.Contains(HTTPIntake, r) {
			b.WriteString(" ✓ |")
		} else {
			b.WriteString(" — |")
		}
	}
	b.WriteString("\n\n`/healthz`, `/readyz`, `/metrics`, gRPC health and reflection need no token.\n\n")
	b.WriteString("Threshold changes are four-eyes (SPEC §6): a proposal (`ProposeThresholdChange`) is approved or\n" +
		"rejected by a principal other than its proposer — the proposer itself gets `PERMISSION_DENIED`, admins\n" +
		"included. With `CHURNWATCH_THRESHOLDS_FOUR_EYES=true` the rules service refuses direct\n" +
		"`UpdateThresholds` (`FAILED_PRECONDITION`), so every change needs an approval.\n\n")
	b.WriteString("## Scope: which customers' alerts and risk a role sees\n\n| role | scope |\n|---|---|\n")
	for _, r := range Roles {
		desc := map[Scope]string{
			ScopeNone:   "none — no alert or customer data",
			ScopeOwn:    "alerts and risk of the customers whose manager is the principal (`sub`)",
			ScopeBranch: "alerts and risk of the customers of the token's `branch`",
			ScopeAll:    "every alert and customer",
		}[ScopeOf(r)]
		fmt.Fprintf(&b, "| %s | %s |\n", r, desc)
	}
	b.WriteString("\nAn alert or customer without a known manager and branch is visible to the `all` scope only.\n")
	return b.String()
}

// configSettings are the names of the token-verification variables.
func configSettings() []string {
	var out []string
	for _, s := range config.AuthSettings {
		out = append(out, s.Name)
	}
	return out
}
