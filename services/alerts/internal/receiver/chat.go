package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// ChatConfig is the chat stanza: a Slack or Microsoft Teams incoming
// webhook gets a short text per change (no customer name: chat channels
// are wider audiences than the RM's mailbox). The URL is itself the
// credential, so it comes from a file.
type ChatConfig struct {
	// Flavor: slack ({"text": …}) or teams (an Adaptive Card message, as
	// Teams workflows' "when a webhook request is received" accepts).
	Flavor  string `yaml:"flavor" json:"flavor"`
	URLFile string `yaml:"url_file" json:"url_file"`
}

func (c *ChatConfig) secretFiles() []string { return []string{c.URLFile} }

func (c *ChatConfig) build(o Options) (Sink, []fieldError) {
	var errs []fieldError
	if c.Flavor != "slack" && c.Flavor != "teams" {
		errs = append(errs, fieldErr("flavor", "%q: want slack or teams", c.Flavor))
	}
	var u string
	if c.URLFile == "" {
		errs = append(errs, fieldErr("url_file", "required: a file holding the incoming-webhook URL"))
	} else if s, err := readSecret(c.URLFile); err != nil {
		errs = append(errs, fieldErr("url_file", "%v", err))
	} else if err := checkURL(s); err != nil {
		errs = append(errs, fieldErr("url_file", "%s: not an https URL", c.URLFile)) // never echo the URL: it is the secret
	} else {
		u = s
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &chat{flavor: c.Flavor, url: u, console: strings.TrimRight(o.ConsoleURL, "/"), http: newHTTPClient()}, nil
}

type chat struct {
	flavor, url, console string
	http                 *http.Client
}

func (c *chat) text(n *Notification) string {
	a := n.Update.GetAlert()
	t := fmt.Sprintf("churnwatch: %s alert %s (%s, tier %s, manager %s)",
		strings.TrimPrefix(a.GetSeverity().String(), "SEVERITY_"), ChangeName(n.Update.GetChange()), a.GetAlertId(),
		strings.TrimPrefix(a.GetTier().String(), "TIER_"), dash(a.GetManagerId()))
	if c.console != "" {
		t += " " + c.console + "/alerts/" + a.GetAlertId()
	}
	return t
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *chat) Deliver(ctx context.Context, n *Notification) error {
	var body any = map[string]string{"text": c.text(n)}
	if c.flavor == "teams" {
		body = map[string]any{"type": "message", "attachments": []any{map[string]any{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"content": map[string]any{"type": "AdaptiveCard", "version": "1.4", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
				"body": []any{map[string]any{"type": "TextBlock", "text": c.text(n), "wrap": true}}},
		}}}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(b))
	if err != nil {
		return Permanent(fmt.Errorf("request: bad url"))
	}
	req.Header.Set("Content-Type", "application/json")
	return post(c.http, req)
}
