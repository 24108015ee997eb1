package cli

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// argumentHelp describes the positional arguments of the commands'
// synopses (Command.Args), by the name they are spelled with there; the
// help test fails for a synopsis argument missing here.
var argumentHelp = map[string]string{
	"ID":                      "the alert's id (alerts list shows it)",
	"FILE|-":                  "the input file (NDJSON, CSV or a JSON array); - reads stdin",
	"YYYY-MM-DD":              "the business day to close; it must have ended (UTC)",
	"RULE.FIELD[.TIER]=VALUE": "a threshold and its new value, e.g. dormancy.declining.days=45; several may be given (thresholds show lists the keys)",
	"CUSTOMER_ID":             "the customer's id",
	"PROPOSAL_ID":             "the threshold proposal's id, e.g. tp-3 (thresholds proposals lists them)",
}

// helpFlags are the flags NewFlags defines on every command.
var helpFlags = map[string]bool{"h": true, "help": true}

// Arguments returns the positional arguments of a synopsis: the words
// before the first flag that are neither optional ([…]) nor "…".
func Arguments(synopsis string) []string {
	var out []string
	for _, w := range strings.Fields(synopsis) {
		if strings.HasPrefix(w, "-") || strings.HasPrefix(w, "[") {
			break
		}
		if w != "…" {
			out = append(out, w)
		}
	}
	return out
}

// writeHelp prints a command's help: synopsis, summary, arguments and
// every flag of fs (so flags added later appear by themselves).
func writeHelp(w io.Writer, name string, fs *flag.FlagSet) {
	c := commands[name]
	if c == nil {
		c = &Command{Name: name}
	}
	fmt.Fprintf(w, "Usage: churnctl %s\n", strings.TrimSpace(name+" "+c.Args))
	if c.Summary != "" {
		fmt.Fprintf(w, "\n%s%s.\n", strings.ToUpper(c.Summary[:1]), c.Summary[1:])
	}
	if c.Help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.Help))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	if args := Arguments(c.Args); len(args) > 0 {
		fmt.Fprintln(tw, "\nArguments:")
		for _, a := range args {
			fmt.Fprintf(tw, "  %s\t%s\n", a, argumentHelp[a])
		}
	}
	fmt.Fprintln(tw, "\nFlags:")
	fs.VisitAll(func(f *flag.Flag) {
		if helpFlags[f.Name] {
			return
		}
		value, usage := flag.UnquoteUsage(f)
		if strings.Contains(value, " ") { // a backquoted phrase, not a value name
			value, _ = flag.UnquoteUsage(&flag.Flag{Value: f.Value})
			usage = f.Usage
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" {
			usage += fmt.Sprintf(" (default %s)", d)
		}
		fmt.Fprintf(tw, "  --%s\t%s\n", strings.TrimSpace(f.Name+" "+value), usage)
	})
	fmt.Fprintf(tw, "  -h, --help\tshow this help\n")
	tw.Flush()
}

// group returns the commands whose first word is word, sorted, when word
// names a group of commands (alerts, thresholds, …).
func group(word string) []*Command {
	var out []*Command
	for n, c := range commands {
		if strings.HasPrefix(n, word+" ") {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// writeGroupHelp prints the subcommands of a group.
func writeGroupHelp(w io.Writer, word string, cs []*Command) {
	fmt.Fprintf(w, "Usage: churnctl %s SUBCOMMAND [ARGS] [FLAGS]   (churnctl %s SUBCOMMAND --help for its arguments and flags)\n\nSubcommands:\n", word, word)
	for _, c := range cs {
		fmt.Fprintf(w, "  %s\n      %s\n", strings.TrimSpace(c.Name+" "+c.Args), c.Summary)
	}
}

func isHelp(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help", "help":
		return true
	}
	return false
}
