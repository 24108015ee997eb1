package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runHelp(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	code := Main(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

// Every command's --help (and -h) describes its arguments and flags: each
// word of its synopsis, each flag of its flag set, on stdout, exit 0,
// without running the command.
func TestEveryCommandHasHelp(t *testing.T) {
	if len(commands) < 20 {
		t.Fatalf("%d commands registered", len(commands))
	}
	for name, c := range commands {
		for _, h := range []string{"--help", "-h"} {
			code, out, errOut := runHelp(t, append(strings.Fields(name), h)...)
			if code != ExitOK || errOut != "" {
				t.Errorf("%s %s: exit %d, stderr %q", name, h, code, errOut)
				continue
			}
			if !strings.HasPrefix(out, "Usage: churnctl "+name) || !strings.Contains(out, c.Summary[1:]) || !strings.Contains(out, "-h, --help") {
				t.Errorf("%s %s: no usage line or summary:\n%s", name, h, out)
			}
			for _, w := range strings.Fields(c.Args) {
				if f, ok := strings.CutPrefix(strings.Trim(w, "[]"), "--"); ok && !strings.Contains(out, "\n  --"+f+" ") && !strings.Contains(out, "\n  --"+f+"\t") {
					t.Errorf("%s %s: flag --%s of the synopsis not described:\n%s", name, h, f, out)
				}
			}
			for _, a := range Arguments(c.Args) {
				if argumentHelp[a] == "" || !strings.Contains(out, "\n  "+a+"   "+argumentHelp[a]) {
					t.Errorf("%s %s: argument %s not described:\n%s", name, h, a, out)
				}
			}
		}
	}
}

// A flag the synopsis does not mention still appears: help comes from the
// flag set. wait --interval is one.
func TestHelpListsEveryFlag(t *testing.T) {
	_, out, _ := runHelp(t, "wait", "--help")
	if !strings.Contains(out, "  --interval duration") || !strings.Contains(out, "(default 250ms)") {
		t.Fatalf("wait --help:\n%s", out)
	}
	// Help wins over missing arguments and does not run the command.
	code, out, _ := runHelp(t, "alerts", "resolve", "--help")
	if code != ExitOK || !strings.Contains(out, "--outcome string") {
		t.Fatalf("alerts resolve --help: %d\n%s", code, out)
	}
}

func TestGroupHelp(t *testing.T) {
	for _, g := range []string{"alerts", "thresholds", "customers", "token", "topics"} {
		code, out, _ := runHelp(t, g, "--help")
		if code != ExitOK {
			t.Errorf("%s --help: exit %d", g, code)
		}
		for _, c := range group(g) {
			if !strings.Contains(out, "  "+c.Name) || !strings.Contains(out, c.Summary) {
				t.Errorf("%s --help lacks %s:\n%s", g, c.Name, out)
			}
		}
	}
	if code, _, errOut := runHelp(t, "alerts"); code != ExitUsage || !strings.Contains(errOut, "alerts list") {
		t.Errorf("bare alerts: exit %d\n%s", code, errOut)
	}
}
