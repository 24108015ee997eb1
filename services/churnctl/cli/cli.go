// Package cli is churnctl, the ops and RM command line: one file per
// command group, each registering its commands here.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitFailure     = 1 // service unreachable or the call failed
	ExitUsage       = 2
	ExitRejected    = 3 // some records were rejected (ingest)
	ExitNotCaughtUp = 4 // wait timed out
)

// ExitError carries an exit code to main.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Usagef reports a usage error (exit 2).
func Usagef(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// Command is one churnctl command, e.g. "alerts list".
type Command struct {
	Name    string // words, e.g. "alerts list"
	Args    string // synopsis of arguments and flags
	Summary string
	// Help, when set, is said in --help after the summary.
	Help string
	// Run parses args (flags after the command words) and does the work.
	Run func(ctx context.Context, env *Env, args []string) error
}

var commands = map[string]*Command{}

// Register adds a command; called from init in each command file.
func Register(c *Command) { commands[c.Name] = c }

// Env is what a command needs from its surroundings.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads configuration (CHURNWATCH_*).
	Getenv func(string) string
	// IsTerminal reports whether stdout is a terminal (live views, progress).
	IsTerminal bool
}

// Addr returns a service's gRPC address from the environment.
func (e *Env) Addr(service string) string {
	key := "CHURNWATCH_" + strings.ToUpper(service) + "_ADDR"
	if v := e.Getenv(key); v != "" {
		return v
	}
	return map[string]string{"ingester": "127.0.0.1:7001", "rules": "127.0.0.1:7002", "alerts": "127.0.0.1:7003"}[service]
}

// Token is the caller's bearer token (CHURNWATCH_TOKEN).
func (e *Env) Token() string { return e.Getenv("CHURNWATCH_TOKEN") }

// Dial connects to a service with the caller's token; TLS when
// CHURNWATCH_TLS_CA is set (mTLS with CHURNWATCH_TLS_CLIENT_CERT/KEY).
func (e *Env) Dial(service string) (*grpc.ClientConn, error) {
	conn, err := client.Dial(e.Addr(service), e.Token(), client.TLS{
		CAFile: e.Getenv("CHURNWATCH_TLS_CA"), CertFile: e.Getenv("CHURNWATCH_TLS_CLIENT_CERT"), KeyFile: e.Getenv("CHURNWATCH_TLS_CLIENT_KEY"),
	})
	if err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("connect %s: %w", service, err)}
	}
	return conn, nil
}

// Config reads typed settings from the environment.
func (e *Env) Config() *config.Env {
	return &config.Env{Lookup: func(k string) (string, bool) { v := e.Getenv(k); return v, v != "" }}
}

// JSON writes v as one line of JSON.
func (e *Env) JSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.Stdout, "%s\n", b)
	return err
}

// RPCError turns a gRPC error into a readable exit error: exit 1 with the
// status message; Unavailable says the service could not be reached.
func RPCError(service string, err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable:
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s unreachable at its address (set CHURNWATCH_%s_ADDR): %s", service, strings.ToUpper(service), st.Message())}
	case codes.Unauthenticated:
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s: not authenticated (set CHURNWATCH_TOKEN, see churnctl token mint): %s", service, st.Message())}
	default:
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s: %s: %s", service, st.Code(), st.Message())}
	}
}

// NewFlags returns a flag set for a command that reports errors to stderr;
// -h/--help prints the command's help (from its synopsis and the flag
// set) to stdout.
func NewFlags(env *Env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("churnctl "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var help bool
	fs.BoolVar(&help, "h", false, "show this help")
	fs.BoolVar(&help, "help", false, "show this help")
	fs.Usage = func() {
		w := env.Stderr
		if help {
			w = env.Stdout
		}
		writeHelp(w, name, fs)
	}
	return fs
}

// Parse parses flags, allowing flags after positional arguments.
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &ExitError{Code: ExitOK, Err: err}
			}
			return nil, &ExitError{Code: ExitUsage, Err: err}
		}
		if h := fs.Lookup("help"); h != nil && h.Value.String() == "true" {
			fs.Usage()
			return nil, &ExitError{Code: ExitOK, Err: flag.ErrHelp}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// Main runs churnctl with args (without the program name) and returns the
// exit code.
func Main(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.Stdout)
		return ExitOK
	}
	// Longest match of command words.
	var cmd *Command
	var rest []string
	for n := min(len(args), 3); n > 0; n-- {
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			cmd, rest = c, args[n:]
			break
		}
	}
	if cmd == nil {
		if cs := group(args[0]); len(cs) > 0 && (len(args) == 1 || isHelp(args[1])) {
			if len(args) == 1 {
				writeGroupHelp(env.Stderr, args[0], cs)
				return ExitUsage
			}
			writeGroupHelp(env.Stdout, args[0], cs)
			return ExitOK
		}
		fmt.Fprintf(env.Stderr, "churnctl: unknown command %q\n\n", strings.Join(args, " "))
		usage(env.Stderr)
		return ExitUsage
	}
	err := cmd.Run(ctx, env, rest)
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Code != ExitOK {
			fmt.Fprintf(env.Stderr, "churnctl %s: %v\n", cmd.Name, ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintf(env.Stderr, "churnctl %s: %v\n", cmd.Name, err)
	return ExitFailure
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `churnctl — operate churnwatch and work its alerts

Usage: churnctl COMMAND [ARGS] [FLAGS]   (churnctl COMMAND --help for its arguments and flags)

Commands:`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  %-40s %s\n", strings.TrimSpace(n+" "+c.Args), c.Summary)
	}
	fmt.Fprintln(w, `
Environment:
  CHURNWATCH_INGESTER_ADDR   ingester gRPC address (127.0.0.1:7001)
  CHURNWATCH_RULES_ADDR      rules gRPC address (127.0.0.1:7002)
  CHURNWATCH_ALERTS_ADDR     alerts gRPC address (127.0.0.1:7003)
  CHURNWATCH_TOKEN           bearer token (churnctl token mint)
  CHURNWATCH_DEV_KEY         signing key file for token mint (churnwatch dev writes one)
  CHURNWATCH_KAFKA_BROKERS   broker list, for status, wait and topics create
  CHURNWATCH_TLS_CA, CHURNWATCH_TLS_CLIENT_CERT, CHURNWATCH_TLS_CLIENT_KEY   TLS / mTLS to the services
  CHURNWATCH_KAFKA_TLS_CA, _KAFKA_TLS_CERT, _KAFKA_TLS_KEY, _KAFKA_SASL_MECHANISM,
  _KAFKA_SASL_USERNAME, _KAFKA_SASL_PASSWORD_FILE   TLS / SASL to Kafka (topics create; kafka.sh --sasl-ssl writes them)
  source DIR/dev.env after 'churnwatch dev --dir DIR' to set them all.

Exit codes: 0 ok, 1 failure or service unreachable, 2 usage, 3 records rejected, 4 wait timed out.`)
}

// Default builds an Env over the process.
func Default() *Env {
	fi, _ := os.Stdout.Stat()
	return &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv,
		IsTerminal: fi != nil && fi.Mode()&os.ModeCharDevice != 0}
}
