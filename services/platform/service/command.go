package service

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Command is one service binary's command line, the same for every
// service: no argument runs it until SIGINT or SIGTERM; `healthcheck`
// probes the running one (a container HEALTHCHECK: exit 0 when healthy);
// `-h`, `--help` or `help` prints Usage; `version` prints Version.
type Command struct {
	Name    string
	Version string
	Usage   func(w io.Writer)
	// Healthcheck probes the service running on this host.
	Healthcheck func(ctx context.Context) error
	// Run loads the configuration and runs the service until ctx ends.
	Run func(ctx context.Context) error
}

// Main runs c with the process's arguments and exits with its code.
func (c Command) Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := c.Exec(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exec runs c with args and returns the exit code: 0, 1 when the service
// or its health check failed, 2 for an unknown argument.
func (c Command) Exec(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "healthcheck":
			if err := c.Healthcheck(ctx); err != nil {
				fmt.Fprintf(stderr, "%s unhealthy: %v\n", c.Name, err)
				return 1
			}
			return 0
		case "-h", "--help", "help":
			c.Usage(stdout)
			return 0
		case "version", "--version":
			fmt.Fprintln(stdout, c.Version)
			return 0
		default:
			fmt.Fprintf(stderr, "%s: unknown argument %q (try --help)\n", c.Name, args[0])
			return 2
		}
	}
	if err := c.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", c.Name, err)
		return 1
	}
	return 0
}
