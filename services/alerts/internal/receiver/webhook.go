package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"google.golang.org/protobuf/encoding/protojson"
)

// WebhookConfig is the webhook stanza: each change is POSTed as a
// CloudEvents 1.0 structured-mode JSON event, signed per Standard Webhooks.
type WebhookConfig struct {
	URL string `yaml:"url" json:"url"`
	// SecretFile holds "whsec_" + base64 of the signing key.
	SecretFile string `yaml:"secret_file" json:"secret_file"`
}

func (w *WebhookConfig) secretFiles() []string { return []string{w.SecretFile} }

func (w *WebhookConfig) build(Options) (Sink, []fieldError) {
	var errs []fieldError
	if err := checkURL(w.URL); err != nil {
		errs = append(errs, fieldErr("url", "%v", err))
	}
	var signer *standardwebhooks.Webhook
	if w.SecretFile == "" {
		errs = append(errs, fieldErr("secret_file", "required: a file holding whsec_ + base64 of the signing key"))
	} else if s, err := readSecret(w.SecretFile); err != nil {
		errs = append(errs, fieldErr("secret_file", "%v", err))
	} else if len(s) < len("whsec_")+24 || s[:6] != "whsec_" {
		errs = append(errs, fieldErr("secret_file", "%s: want whsec_ followed by base64 of a key of at least 18 bytes", w.SecretFile))
	} else if signer, err = standardwebhooks.NewWebhook(s); err != nil {
		errs = append(errs, fieldErr("secret_file", "%s: not base64 after whsec_", w.SecretFile))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &webhook{url: w.URL, signer: signer, http: newHTTPClient()}, nil
}

// checkURL accepts https, and http only to a loopback host (a local relay,
// tests): the body carries customer data.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && loopback(u.Hostname()):
	default:
		return fmt.Errorf("%q: want https:// (http:// only to a loopback host)", s)
	}
	return nil
}

func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	return &http.Client{
		Transport: tr,
		// A signed body is never sent on to where a redirect points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type webhook struct {
	url    string
	signer *standardwebhooks.Webhook
	http   *http.Client
}

// CloudEventSource is the CloudEvents source of every alert event.
const CloudEventSource = "churnwatch"

// CloudEventType is the CloudEvents type of a change: com.churnwatch.alert.created…
func CloudEventType(n *Notification) string {
	return "com.churnwatch.alert." + ChangeName(n.Update.GetChange())
}

// CloudEvent is the structured-mode JSON body of a change: id ALERTID.vN,
// subject the alert id, data the AlertUpdate as protojson.
func CloudEvent(n *Notification) ([]byte, error) {
	data, err := protojson.Marshal(n.Update)
	if err != nil {
		return nil, err
	}
	e := cloudevents.New(cloudevents.CloudEventsVersionV1)
	e.SetID(n.ID)
	e.SetSource(CloudEventSource)
	e.SetType(CloudEventType(n))
	e.SetSubject(n.Update.GetAlert().GetAlertId())
	if t := n.Update.GetAt(); t != nil {
		e.SetTime(t.AsTime())
	}
	// json.RawMessage, not []byte: the SDK writes bytes as data_base64.
	if err := e.SetData("application/json", json.RawMessage(data)); err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e.MarshalJSON()
}

func (w *webhook) Deliver(ctx context.Context, n *Notification) error {
	body, err := CloudEvent(n)
	if err != nil {
		return Permanent(fmt.Errorf("build event: %w", err))
	}
	now := time.Now()
	sig, err := w.signer.Sign(n.ID, now, body)
	if err != nil {
		return Permanent(fmt.Errorf("sign: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return Permanent(err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	req.Header.Set("webhook-id", n.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	req.Header.Set("User-Agent", "churnwatch-alerts")
	return post(w.http, req)
}

// post sends req and classifies the outcome: 2xx delivered; 408, 429, 5xx
// and network errors retried; any other answer permanent.
func post(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry a token (chat webhooks)
		}
		return fmt.Errorf("post: %w", err) // connection refused, timeout, TLS: retried
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return &StatusError{Code: code}
	default:
		return Permanent(&StatusError{Code: code})
	}
}

// StatusError is an HTTP answer other than 2xx.
type StatusError struct{ Code int }

func (e *StatusError) Error() string {
	return fmt.Sprintf("answered %d %s", e.Code, http.StatusText(e.Code))
}
