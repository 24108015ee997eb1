package receiver_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/internal/receiver"
)

// The shipped example is valid once its secret files exist.
func TestExampleFileIsValid(t *testing.T) {
	raw, err := os.ReadFile("../../../../deploy/receivers.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range map[string]string{
		"crm-webhook":       "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"teams-webhook-url": "https://bank.webhook.office.com/workflows/abc",
		"smtp-password":     "s3cret",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	raw = []byte(strings.ReplaceAll(string(raw), "/run/secrets/", dir+"/"))
	set, err := receiver.Parse("receivers.example.yaml", raw, receiver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range set.Receivers {
		got = append(got, r.Name+":"+r.Channel)
	}
	if strings.Join(got, " ") != "crm:webhook retention-teams:chat rm-mail:email" {
		t.Fatalf("receivers %v", got)
	}
}

func TestErrorsNameTheLine(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "s")
	_ = os.WriteFile(secret, []byte("not-a-secret"), 0o600)
	for _, c := range []struct{ file, want string }{
		{"receivers:\n  - name: a\n    webhok: {url: https://x.example}\n", "f.yaml: line 3: field webhok not found"},
		{"receivers:\n  - name: a\n    match:\n      tiers: [GOLD]\n    webhook: {url: https://x.example, secret_file: " + secret + "}\n",
			`f.yaml:4: receiver "a": match.tiers: unknown tier "GOLD"`},
		{"receivers:\n  - name: a\n    webhook: {url: https://x.example, secret_file: " + secret + "}\n", `f.yaml:3: receiver "a": webhook.secret_file: ` + secret + ": want whsec_"},
		{"receivers:\n  - name: a\n    email: {smtp: smtp.bank.example:25, from: a@b.example, starttls: false}\n", `f.yaml:3: receiver "a": email.starttls: false is only allowed for a loopback relay`},
		{"receivers:\n  - name: a\n    email: {smtp: 127.0.0.1:25, from: a@b.example, starttls: false}\n  - name: a\n    email: {smtp: 127.0.0.1:25, from: a@b.example, starttls: false}\n", `f.yaml:4: receiver "a": name: defined twice (first at line 2)`},
		{"receivers:\n  - name: Bad Name\n    email: {smtp: 127.0.0.1:25, from: a@b.example, starttls: false}\n", `f.yaml:2: receivers[0].name: "Bad Name"`},
		{"receivers:\n  - name: a\n", `f.yaml:2: receiver "a": needs exactly one channel`},
		{"", "f.yaml:1: receivers: no receivers"},
	} {
		_, err := receiver.Parse("f.yaml", []byte(c.file), receiver.Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %q", c.file, err, c.want)
		}
	}
}

func TestMatch(t *testing.T) {
	set, err := receiver.Parse("f.yaml", []byte(`receivers:
  - name: a
    match: {roles: [branch_head], min_severity: HIGH, rules: [large_outflow], tiers: [MASS]}
    email: {smtp: 127.0.0.1:25, from: a@b.example, starttls: false, to: x@b.example}
`), receiver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := set.Receivers[0]
	base := func() *cwv1.Alert {
		return &cwv1.Alert{BranchId: "br-1", Severity: cwv1.Severity_SEVERITY_HIGH, Tier: cwv1.Tier_TIER_MASS,
			Reasons: []*cwv1.Explanation{{RuleId: "large_outflow"}}}
	}
	if !r.Matches(&cwv1.AlertUpdate{Alert: base()}) {
		t.Error("an unassigned HIGH MASS large_outflow alert should match")
	}
	for name, edit := range map[string]func(a *cwv1.Alert){
		"has a manager (branch head not notified)": func(a *cwv1.Alert) { a.ManagerId = "rm-1" },
		"severity below": func(a *cwv1.Alert) { a.Severity = cwv1.Severity_SEVERITY_MEDIUM },
		"other tier":     func(a *cwv1.Alert) { a.Tier = cwv1.Tier_TIER_BASIC },
		"other rule":     func(a *cwv1.Alert) { a.Reasons[0].RuleId = "dormancy" },
	} {
		a := base()
		edit(a)
		if r.Matches(&cwv1.AlertUpdate{Alert: a}) {
			t.Errorf("%s: matched", name)
		}
	}
	a := base()
	a.ManagerId, a.State = "rm-1", cwv1.AlertState_ALERT_STATE_ESCALATED
	if !r.Matches(&cwv1.AlertUpdate{Alert: a}) {
		t.Error("an escalated alert notifies the branch head")
	}
}
