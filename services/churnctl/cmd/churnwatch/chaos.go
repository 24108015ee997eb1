package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/churnwatch/churnwatch/services/churnctl/chaos"
)

// runChaos runs the fault-injection harness and prints its report; it
// fails when the report shows the SPEC §8 "No loss" contract broken.
func runChaos(ctx context.Context, o chaos.Options) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o.BrokerCommand = []string{self, "broker"}
	o.Log = os.Stderr
	start := time.Now()
	rep, err := chaos.Run(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "chaos: done in %s; logs and data in %s\n", time.Since(start).Round(time.Second), rep.Dir)
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return err
	}
	if f := rep.Failures(); len(f) > 0 {
		return fmt.Errorf("chaos: contract broken: %s", strings.Join(f, "; "))
	}
	return nil
}
