// Command churnctl operates churnwatch and works its alerts.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/churnwatch/churnwatch/services/churnctl/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, cli.Default(), os.Args[1:])
	stop()
	os.Exit(code)
}
