package receiver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// File is the shape of CHURNWATCH_ALERTS_RECEIVERS (SPEC §5).
type File struct {
	Receivers []Config `yaml:"receivers"`
}

// Config is one receiver as written in the file.
type Config struct {
	Name  string `yaml:"name" json:"name"`
	Match Match  `yaml:"match" json:"match"`
	// Timeout bounds one delivery attempt (default 10s).
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	Retry   Retry         `yaml:"retry" json:"retry"`

	// Channels: exactly one.
	Webhook *WebhookConfig `yaml:"webhook" json:"webhook,omitempty"`
	Email   *EmailConfig   `yaml:"email" json:"email,omitempty"`
	Chat    *ChatConfig    `yaml:"chat" json:"chat,omitempty"`
}

// channels lists the channel stanzas of c by their key in the file; a new
// channel adds one line here.
func (c *Config) channels() map[string]channel {
	m := map[string]channel{}
	if c.Webhook != nil {
		m["webhook"] = c.Webhook
	}
	if c.Email != nil {
		m["email"] = c.Email
	}
	if c.Chat != nil {
		m["chat"] = c.Chat
	}
	return m
}

// channelKeys are the stanzas a receiver may have, for the error message.
const channelKeys = "webhook, email or chat"

// Retry is how a change that failed with a retryable error is retried:
// exponential backoff from Initial to Max with full jitter, for up to For
// after the first attempt; then it is dead-lettered.
type Retry struct {
	For     time.Duration `yaml:"for" json:"for"`         // default 24h
	Initial time.Duration `yaml:"initial" json:"initial"` // default 1s
	Max     time.Duration `yaml:"max" json:"max"`         // default 5m
}

// channel is one channel stanza: it checks itself and builds its Sink.
type channel interface {
	build(o Options) (Sink, []fieldError)
	// secretFiles are read by build; a change of any of them reloads the
	// receiver like a change of the file.
	secretFiles() []string
}

type fieldError struct{ field, msg string }

func fieldErr(field, format string, args ...any) fieldError {
	return fieldError{field, fmt.Sprintf(format, args...)}
}

// Options are settings a channel needs from the service.
type Options struct {
	// ConsoleURL is CHURNWATCH_CONSOLE_URL: links to /alerts/ID when set.
	ConsoleURL string
}

// Receiver is a checked receiver with its Sink.
type Receiver struct {
	Config
	Channel string // "webhook", "email", …
	Sink    Sink
	// Digest changes when the receiver's settings or secrets change.
	Digest string
	match  compiled
}

// Matches reports whether the receiver takes this change.
func (r *Receiver) Matches(u *cwv1.AlertUpdate) bool { return r.match.matches(u) }

// Set is the receivers of one version of the file.
type Set struct {
	Receivers []*Receiver
	// Digest changes when the file or a secret file it names changes.
	Digest string
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Load reads and checks the receivers file. Every problem is reported, each
// as "FILE:LINE: receiver NAME: FIELD: what is wrong".
func Load(path string, o Options) (*Set, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("receivers: %w", err)
	}
	return Parse(path, raw, o)
}

// Parse checks the content of a receivers file named path.
func Parse(path string, raw []byte, o Options) (*Set, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %s", path, strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n  ", "\n  "+path+": "))
	}
	var root yaml.Node
	_ = yaml.Unmarshal(raw, &root)
	items := receiverNodes(&root)

	var errs []error
	report := func(line int, name, field, msg string) {
		who := ""
		if name != "" {
			who = fmt.Sprintf(" receiver %q:", name)
		}
		if field != "" {
			field = " " + field + ":"
		}
		errs = append(errs, fmt.Errorf("%s:%d:%s%s %s", path, line, who, field, msg))
	}
	if len(f.Receivers) == 0 {
		report(1, "", "receivers", "no receivers (an empty list delivers nothing; unset CHURNWATCH_ALERTS_RECEIVERS instead)")
	}
	set := &Set{}
	digest := sha256.New()
	digest.Write(raw)
	seen := map[string]int{}
	for i := range f.Receivers {
		c := &f.Receivers[i]
		var node *yaml.Node
		if i < len(items) {
			node = items[i]
		}
		line := func(path ...string) int { return lineOf(node, path...) }
		if !namePattern.MatchString(c.Name) {
			report(line("name"), "", fmt.Sprintf("receivers[%d].name", i), fmt.Sprintf("%q: want 1-63 of a-z, 0-9, _ and -, starting with a letter or digit (it names Redis keys and metrics)", c.Name))
		} else if prev, dup := seen[c.Name]; dup {
			report(line("name"), c.Name, "name", fmt.Sprintf("defined twice (first at line %d)", prev))
		}
		seen[c.Name] = line("name")
		m, merrs := c.Match.compile()
		for _, e := range merrs {
			field, msg, _ := strings.Cut(e, ": ")
			report(line(strings.Split(field, ".")...), c.Name, field, msg)
		}
		if c.Timeout == 0 {
			c.Timeout = 10 * time.Second
		}
		if c.Timeout < 0 || c.Timeout > 5*time.Minute {
			report(line("timeout"), c.Name, "timeout", "must be between 0 and 5m")
		}
		if c.Retry.For == 0 {
			c.Retry.For = 24 * time.Hour
		}
		if c.Retry.Initial == 0 {
			c.Retry.Initial = time.Second
		}
		if c.Retry.Max == 0 {
			c.Retry.Max = max(5*time.Minute, c.Retry.Initial)
		}
		if c.Retry.For < 0 || c.Retry.Initial < 0 || c.Retry.Max < c.Retry.Initial {
			report(line("retry"), c.Name, "retry", "for and initial must be positive and max at least initial")
		}
		chans := c.channels()
		if len(chans) != 1 {
			report(line(), c.Name, "", fmt.Sprintf("needs exactly one channel (%s), has %d", channelKeys, len(chans)))
			continue
		}
		for key, ch := range chans {
			sink, ferrs := ch.build(o)
			for _, fe := range ferrs {
				report(line(append([]string{key}, strings.Split(fe.field, ".")...)...), c.Name, key+"."+fe.field, fe.msg)
			}
			b, _ := json.Marshal(c)
			h := sha256.New()
			h.Write(b)
			for _, sf := range ch.secretFiles() {
				s, _ := os.ReadFile(sf)
				h.Write(s)
				digest.Write(s)
			}
			set.Receivers = append(set.Receivers, &Receiver{Config: *c, Channel: key, Sink: sink, match: m, Digest: hex.EncodeToString(h.Sum(nil))})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	set.Digest = hex.EncodeToString(digest.Sum(nil))
	return set, nil
}

func receiverNodes(root *yaml.Node) []*yaml.Node {
	if root == nil || len(root.Content) == 0 {
		return nil
	}
	doc := root.Content[0]
	if n := child(doc, "receivers"); n != nil && n.Kind == yaml.SequenceNode {
		return n.Content
	}
	return nil
}

func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// lineOf is the line of the deepest key of path found under n.
func lineOf(n *yaml.Node, path ...string) int {
	if n == nil {
		return 1
	}
	line := n.Line
	for _, k := range path {
		if k == "" || strings.HasSuffix(k, "]") {
			continue
		}
		c := child(n, k)
		if c == nil {
			break
		}
		line, n = c.Line, c
	}
	return line
}

// loopback reports whether host (no port) is a loopback name or address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readSecret reads a secret file, trimmed of surrounding white space.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
