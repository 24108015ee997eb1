package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/churnwatch/churnwatch/services/churnctl/bench"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/embedded"
)

func broker(ctx context.Context, port, partitions int) error {
	topics := config.LoadCommon(config.FromOS(), "", "", "").Topics
	k, err := embedded.StartKafka(port, partitions, topics.All()...)
	if err != nil {
		return err
	}
	defer k.Close()
	fmt.Printf("broker %s\n", strings.Join(k.Brokers, ","))
	<-ctx.Done()
	return nil
}

// runBench starts the broker as a child process and a real redis-server,
// then runs the benchmark and prints its JSON report on stdout.
func runBench(ctx context.Context, o bench.Options) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, self, "broker")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start broker process: %w", err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("broker process: %w", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "broker ")
	if !ok {
		return fmt.Errorf("broker process said %q", line)
	}
	o.Brokers = strings.Split(addr, ",")
	r, err := embedded.StartRedis("", 0)
	if err != nil {
		return err
	}
	defer r.Close()
	o.RedisAddr = r.Addr
	start := time.Now()
	res, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: done in %s\n", time.Since(start).Round(time.Second))
	return json.NewEncoder(os.Stdout).Encode(res)
}
