package alerting

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
)

// Play is one playbook entry: an action for the alerts matching every field
// it sets (an empty field matches anything).
type Play struct {
	Stage  string `yaml:"stage,omitempty" json:"stage,omitempty"` // ACTIVE, DECLINING, CHURNED, WON_BACK
	Tier   string `yaml:"tier,omitempty" json:"tier,omitempty"`   // HIGH_NET_WORTH, POTENTIAL, MASS, BASIC
	Rule   string `yaml:"rule,omitempty" json:"rule,omitempty"`   // rule id, e.g. outflow.large
	Action string `yaml:"action" json:"action"`

	stage cwv1.Stage
	tier  cwv1.Tier
}

// Playbook picks the recommended action of an alert by stage, tier and rule.
type Playbook struct {
	// Default applies when no entry matches.
	Default string `yaml:"default" json:"default"`
	// Replace drops the built-in entries (a file only).
	Replace bool   `yaml:"replace" json:"replace"`
	Plays   []Play `yaml:"plays" json:"plays"`
}

// DefaultPlaybook is SPEC §5's playbook.
func DefaultPlaybook() *Playbook {
	p := &Playbook{
		Default: "Call the customer to review how the relationship is going",
		Plays: []Play{
			{Tier: "HIGH_NET_WORTH", Rule: "outflow.large", Action: "RM call within 4 h: ask about the transfer and present a matching investment or deposit offer"},
			{Tier: "HIGH_NET_WORTH", Rule: "outflow.drain", Action: "RM call within 4 h: funds are leaving; review the relationship and pricing"},
			{Rule: "outflow.large", Action: "Call the customer about the transfer and offer a competitive savings product"},
			{Rule: "outflow.drain", Action: "Call the customer today: funds are moving to another bank; offer a retention rate"},
			{Rule: "complaints", Action: "Resolve the complaint first, then call the customer to confirm it is settled"},
			{Rule: "closure", Action: "Hold an exit interview and make a retention offer"},
			{Rule: "salary.stopped", Action: "Ask whether the salary moved to another bank; offer the payroll package"},
			{Rule: "dormancy.churned", Action: "Make a win-back offer"},
			{Rule: "dormancy.declining", Action: "Send a care message and follow up with an RM call"},
			{Rule: "activity.drop", Action: "Send a care message and follow up with an RM call"},
			{Rule: "winback", Action: "Welcome the customer back and offer a reactivation package"},
			{Stage: "CHURNED", Action: "Make a win-back offer"},
			{Stage: "DECLINING", Action: "Send a care message and follow up with an RM call"},
		},
	}
	if err := p.compile(); err != nil {
		panic(err) // the built-in table is valid
	}
	return p
}

// LoadPlaybook reads a YAML or JSON playbook file. Its entries come before
// the built-in ones (and win ties), unless it sets replace: true.
func LoadPlaybook(path string) (*Playbook, error) {
	if path == "" {
		return DefaultPlaybook(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read playbook: %w", err)
	}
	return ParsePlaybook(b)
}

// ParsePlaybook parses a YAML (or JSON) playbook and merges it with the
// built-in one as LoadPlaybook describes.
func ParsePlaybook(b []byte) (*Playbook, error) {
	var p Playbook
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("parse playbook: %w", err)
	}
	if err := p.compile(); err != nil {
		return nil, err
	}
	if !p.Replace {
		def := DefaultPlaybook()
		p.Plays = append(p.Plays, def.Plays...)
		if p.Default == "" {
			p.Default = def.Default
		}
	}
	return &p, nil
}

func (p *Playbook) compile() error {
	var errs []error
	for i := range p.Plays {
		pl := &p.Plays[i]
		if strings.TrimSpace(pl.Action) == "" {
			errs = append(errs, fmt.Errorf("playbook entry %d: action is empty", i+1))
		}
		if pl.Stage != "" {
			v, ok := cwv1.Stage_value["STAGE_"+strings.ToUpper(pl.Stage)]
			if !ok || v == 0 {
				errs = append(errs, fmt.Errorf("playbook entry %d: unknown stage %q", i+1, pl.Stage))
			}
			pl.stage = cwv1.Stage(v)
		}
		if pl.Tier != "" {
			v, ok := cwv1.Tier_value["TIER_"+strings.ToUpper(pl.Tier)]
			if !ok || v == 0 {
				errs = append(errs, fmt.Errorf("playbook entry %d: unknown tier %q", i+1, pl.Tier))
			}
			pl.tier = cwv1.Tier(v)
		}
	}
	return errors.Join(errs...)
}

// match scores how specifically pl fits; -1 when it does not. A rule match
// weighs most (the reason is the most concrete thing to act on), then the
// stage, then the tier.
func (pl *Play) match(stage cwv1.Stage, tier cwv1.Tier, rule string) int {
	s := 0
	if pl.Rule != "" {
		if pl.Rule != rule {
			return -1
		}
		s += 4
	}
	if pl.stage != 0 {
		if pl.stage != stage {
			return -1
		}
		s += 2
	}
	if pl.tier != 0 {
		if pl.tier != tier {
			return -1
		}
		s++
	}
	return s
}

func (p *Playbook) best(stage cwv1.Stage, tier cwv1.Tier, rule string) string {
	best, score := "", -1
	for i := range p.Plays {
		if s := p.Plays[i].match(stage, tier, rule); s > score {
			best, score = p.Plays[i].Action, s
		}
	}
	return best
}

// Action returns the recommended action for an alert: the best-matching
// entry for each of its rules, without repeats, joined in reason order.
func (p *Playbook) Action(stage cwv1.Stage, tier cwv1.Tier, rules []string) string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rules {
		if a := p.best(stage, tier, r); a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		if a := p.best(stage, tier, ""); a != "" {
			return a
		}
		return p.Default
	}
	return strings.Join(out, "; ")
}
