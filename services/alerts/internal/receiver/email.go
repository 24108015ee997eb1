package receiver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"net"
	"os"
	"strconv"
	"strings"
	"text/template"
	"time"

	mail "github.com/wneessen/go-mail"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// EmailConfig is the email stanza: SMTP with STARTTLS to the routed
// manager's managerEmail, or to a fixed address.
type EmailConfig struct {
	// SMTP is the relay, host:port.
	SMTP string `yaml:"smtp" json:"smtp"`
	From string `yaml:"from" json:"from"`
	// To is a fixed recipient; empty = the routed manager's managerEmail.
	To string `yaml:"to" json:"to"`
	// StartTLS is required (default true); false only for a loopback relay.
	StartTLS *bool `yaml:"starttls" json:"starttls"`
	// TLSCAFile verifies the relay's certificate (default: system roots).
	TLSCAFile string `yaml:"tls_ca_file" json:"tls_ca_file"`
	// Username and PasswordFile enable SMTP AUTH (the strongest mechanism
	// the relay offers; never over an unencrypted connection).
	Username     string `yaml:"username" json:"username"`
	PasswordFile string `yaml:"password_file" json:"password_file"`
}

func (e *EmailConfig) secretFiles() []string {
	var out []string
	for _, f := range []string{e.PasswordFile, e.TLSCAFile} {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (e *EmailConfig) build(o Options) (Sink, []fieldError) {
	var errs []fieldError
	s := &email{from: e.From, to: e.To, starttls: e.StartTLS == nil || *e.StartTLS, user: e.Username, console: strings.TrimRight(o.ConsoleURL, "/")}
	host, port, err := net.SplitHostPort(e.SMTP)
	if err != nil || host == "" {
		errs = append(errs, fieldErr("smtp", "%q: want host:port", e.SMTP))
	} else if s.port, err = strconv.Atoi(port); err != nil || s.port <= 0 || s.port > 65535 {
		errs = append(errs, fieldErr("smtp", "%q: bad port", e.SMTP))
	}
	s.host = host
	if !s.starttls && !loopback(host) {
		errs = append(errs, fieldErr("starttls", "false is only allowed for a loopback relay (localhost, 127.0.0.1, ::1)"))
	}
	if !plainAddress(e.From) {
		errs = append(errs, fieldErr("from", "%q is not an email address", e.From))
	}
	if e.To != "" && !plainAddress(e.To) {
		errs = append(errs, fieldErr("to", "%q is not an email address", e.To))
	}
	if (e.Username == "") != (e.PasswordFile == "") {
		errs = append(errs, fieldErr("username", "username and password_file go together"))
	}
	if e.PasswordFile != "" {
		if s.password, err = readSecret(e.PasswordFile); err != nil {
			errs = append(errs, fieldErr("password_file", "%v", err))
		}
	}
	if e.TLSCAFile != "" {
		pem, err := os.ReadFile(e.TLSCAFile)
		s.roots = x509.NewCertPool()
		if err != nil {
			errs = append(errs, fieldErr("tls_ca_file", "%v", err))
		} else if !s.roots.AppendCertsFromPEM(pem) {
			errs = append(errs, fieldErr("tls_ca_file", "%s: no PEM certificate", e.TLSCAFile))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

func plainAddress(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && !strings.ContainsAny(s, " <>\r\n\t,;")
}

type email struct {
	host     string
	port     int
	from, to string
	starttls bool
	roots    *x509.CertPool
	user     string
	password string
	console  string
}

// recipient is the fixed to: or the routed manager's address. The profile
// must be of the manager the alert is routed to: after a reassignment the
// new manager's profile may not have arrived yet.
func (s *email) recipient(n *Notification) string {
	if s.to != "" {
		return s.to
	}
	a, p := n.Update.GetAlert(), n.Profile
	if p == nil || a.GetManagerId() == "" || p.GetManagerId() != a.GetManagerId() {
		return ""
	}
	return p.GetManagerEmail()
}

func (s *email) Deliver(ctx context.Context, n *Notification) error {
	to := s.recipient(n)
	if to == "" {
		return ErrNoRecipient
	}
	m, err := s.message(n, to)
	if err != nil {
		return Permanent(err)
	}
	opts := []mail.Option{mail.WithPort(s.port), mail.WithHELO("churnwatch")}
	if deadline, ok := ctx.Deadline(); ok {
		opts = append(opts, mail.WithTimeout(time.Until(deadline)))
	}
	if s.starttls {
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory),
			mail.WithTLSConfig(&tls.Config{ServerName: s.host, RootCAs: s.roots, MinVersion: tls.VersionTLS12}))
	} else {
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	if s.user != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(s.user), mail.WithPassword(s.password))
	}
	c, err := mail.NewClient(s.host, opts...)
	if err != nil {
		return Permanent(err)
	}
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		// A 5xx reply (recipient or sender refused) will not change on
		// retry; 4xx, connection and TLS failures may.
		var se *mail.SendError
		if errors.As(err, &se) && se.ErrorCode() >= 500 && se.ErrorCode() < 600 {
			return Permanent(fmt.Errorf("smtp: %w", err))
		}
		return fmt.Errorf("smtp: %w", err)
	}
	return nil
}

// mailView is what the templates show.
type mailView struct {
	ID, Customer, Name, Tier, Severity, State, Change, Action, Due, Link, Manager string
	Reasons                                                                       []reasonView
}

type reasonView struct{ Rule, Observed, Threshold, Unit, Detail string }

func (s *email) view(n *Notification) mailView {
	a := n.Update.GetAlert()
	v := mailView{
		ID: a.GetAlertId(), Customer: a.GetCustomerId(), Name: a.GetCustomerDisplayName(),
		Tier:     strings.TrimPrefix(a.GetTier().String(), "TIER_"),
		Severity: strings.TrimPrefix(a.GetSeverity().String(), "SEVERITY_"),
		State:    strings.TrimPrefix(a.GetState().String(), "ALERT_STATE_"),
		Change:   ChangeName(n.Update.GetChange()), Action: a.GetRecommendedAction(), Manager: a.GetManagerId(),
	}
	if v.Name == "" && n.Profile != nil {
		v.Name = n.Profile.GetDisplayName()
	}
	if d := a.GetAckDueAt(); d != nil && (a.GetState() == cwv1.AlertState_ALERT_STATE_OPEN || a.GetState() == cwv1.AlertState_ALERT_STATE_ESCALATED) {
		v.Due = d.AsTime().UTC().Format("2006-01-02 15:04 MST")
	}
	if s.console != "" {
		v.Link = s.console + "/alerts/" + a.GetAlertId()
	}
	for _, r := range a.GetReasons() {
		v.Reasons = append(v.Reasons, reasonView{r.GetRuleId(), r.GetObserved(), r.GetThreshold(), r.GetUnit(), r.GetDetail()})
	}
	return v
}

var textBody = template.Must(template.New("text").Parse(`Churn alert {{.Change}}: {{.Severity}}
Customer: {{if .Name}}{{.Name}} ({{.Customer}}){{else}}{{.Customer}}{{end}}
Tier: {{.Tier}}
State: {{.State}}{{if .Due}}
Acknowledge by: {{.Due}}{{end}}

Why:
{{range .Reasons}}- {{.Rule}}: observed {{.Observed}}{{if .Unit}} {{.Unit}}{{end}} vs threshold {{.Threshold}}{{if .Detail}} ({{.Detail}}){{end}}
{{end}}{{if .Action}}
Recommended action: {{.Action}}
{{end}}{{if .Link}}
Open in the console: {{.Link}}
{{end}}
Alert {{.ID}}
`))

var htmlBody = htmltemplate.Must(htmltemplate.New("html").Parse(`<!DOCTYPE html>
<html><body>
<h1>Churn alert {{.Change}}: {{.Severity}}</h1>
<table>
<tr><th scope="row">Customer</th><td>{{if .Name}}{{.Name}} ({{.Customer}}){{else}}{{.Customer}}{{end}}</td></tr>
<tr><th scope="row">Tier</th><td>{{.Tier}}</td></tr>
<tr><th scope="row">State</th><td>{{.State}}</td></tr>
{{if .Due}}<tr><th scope="row">Acknowledge by</th><td>{{.Due}}</td></tr>
{{end}}</table>
<h2>Why</h2>
<ul>
{{range .Reasons}}<li>{{.Rule}}: observed {{.Observed}}{{if .Unit}} {{.Unit}}{{end}} vs threshold {{.Threshold}}{{if .Detail}} ({{.Detail}}){{end}}</li>
{{end}}</ul>
{{if .Action}}<p>Recommended action: {{.Action}}</p>
{{end}}{{if .Link}}<p><a href="{{.Link}}">Open the alert in the console</a></p>
{{end}}<p>Alert {{.ID}}</p>
</body></html>
`))

func (s *email) message(n *Notification, to string) (*mail.Msg, error) {
	v := s.view(n)
	var text, html bytes.Buffer
	if err := textBody.Execute(&text, v); err != nil {
		return nil, err
	}
	if err := htmlBody.Execute(&html, v); err != nil {
		return nil, err
	}
	m := mail.NewMsg()
	if err := m.From(s.from); err != nil {
		return nil, err
	}
	if err := m.To(to); err != nil {
		return nil, err
	}
	who := v.Customer
	if v.Name != "" {
		who = v.Name + " (" + v.Customer + ")"
	}
	m.Subject(fmt.Sprintf("[churnwatch] %s %s: %s", v.Severity, v.Change, who))
	// One Message-ID per alert version: a relay or mailbox that sees the
	// same version twice can tell.
	m.SetMessageIDWithValue(n.ID + "@churnwatch")
	m.SetDate()
	m.SetBodyString(mail.TypeTextPlain, text.String())
	m.AddAlternativeString(mail.TypeTextHTML, html.String())
	return m, nil
}
