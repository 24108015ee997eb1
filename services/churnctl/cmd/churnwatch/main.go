// Command churnwatch runs churnwatch in one process for development and
// demos: `churnwatch dev` (the three services plus an embedded broker and
// Redis) and `churnwatch demo` (the dev stack with a simulated bank streamed
// through it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/churnwatch/churnwatch/services/churnctl/bench"
	"github.com/churnwatch/churnwatch/services/churnctl/chaos"
	"github.com/churnwatch/churnwatch/services/churnctl/demo"
	"github.com/churnwatch/churnwatch/services/churnctl/devstack"
)

const usage = `churnwatch — churnwatch in one process, for development and demos

Usage:
  churnwatch dev  [--dir D] [--any-port] [--logs]
      Runs ingester, rules, alerts and the console (dev mode, at
      CHURNWATCH_CONSOLE_ADDR, default 127.0.0.1:8080; sign in with
      <console>/dev/login?sub=ID&role=ROLE[&branch=B]) plus an embedded Kafka-protocol broker
      (franz-go kfake) and Redis (a child redis-server), and writes D/dev.env
      (default D=.dev) with export lines for every address, the broker list,
      Redis, the dev token key and an admin token: ". D/dev.env" then use
      churnctl. Services listen on the SPEC defaults 127.0.0.1:7001-7003
      (gRPC) and :8001-8003 (HTTP) unless --any-port (then every port,
      the console's too, is a free one; dev.env has CHURNWATCH_CONSOLE_URL). Real Kafka and Redis are
      used instead when CHURNWATCH_KAFKA_BROKERS / CHURNWATCH_REDIS_ADDR are
      set. Stops cleanly on Ctrl-C / SIGTERM.
  churnwatch demo [--customers N] [--months M] [--seed S] [--serve] [--dir D] [--logs]
      The dev stack (console included) plus a simulated bank streamed
      through it: event progress (events, rate, ETA) and alerts as they come,
      in event-time order, then a detection summary, the console's URL with
      /dev/login links for the manager with the most alerts and for a branch
      head, and what to try next. Exits when done, or with --serve keeps the
      stack and the console running (D/dev.env written) until Ctrl-C.

  churnwatch broker [--port P] [--partitions N]
      Only the embedded Kafka-protocol broker, with the churnwatch topics;
      prints "broker ADDR" and serves until stopped.
  churnwatch bench [--kafka embedded|real] [--customers N] [--months M]
                   [--rate R] [--for D] [--cpuprofile F] [--allocprofile F]
      The performance report (make bench): starts the broker in its own
      process (--kafka real: a three-node Apache Kafka cluster by
      scripts/kafka.sh on free ports, topics with replication 3 and
      min.insync.replicas 2, and Kafka's consumer perf tool as a second
      reference) and a real redis-server, streams a simulated bank through
      the pipeline, and prints one JSON object. --cpuprofile profiles the
      pipeline phase; --allocprofile writes F.before and F.after (go tool
      pprof -base F.before F.after shows the phase's allocations).

  churnwatch chaos [--kafka real|embedded] [--kills N] [--customers N]
                   [--months M] [--seed S] [--dir D] [--partitions P]
      The fault-injection run (make chaos, docs/reliability.md): two
      instances of every service as separate processes (bin/ingester,
      bin/rules, bin/alerts, built when missing) on a three-broker Apache
      Kafka cluster (scripts/kafka.sh; --kafka embedded: the broker above in
      its own process) and a redis-server with an append-only file; a
      simulated bank streamed through while service instances (at least N
      kills, default 12), one broker and Redis are SIGKILLed and restarted
      and an ops Subscribe stream stays open. Prints one JSON report; exits
      1 when live alerts differ from the back-test, an alert version is
      published twice or missing, the stream skipped a version, or an
      accepted event was not scored.

The embedded broker runs every request on one goroutine: its throughput is
not Kafka's.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "churnwatch:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Println(usage)
		return nil
	}
	fs := flag.NewFlagSet("churnwatch "+args[0], flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), usage) }
	logs := fs.Bool("logs", false, "print the services' JSON logs to stderr")
	switch args[0] {
	case "dev":
		dir := fs.String("dir", ".dev", "directory for dev.env, the dev key and Redis files")
		anyPort := fs.Bool("any-port", false, "bind services to free ports instead of 7001-7003/8001-8003")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return dev(ctx, *dir, *anyPort, logOut(*logs))
	case "demo":
		n := fs.Int("customers", 3000, "simulated customers")
		months := fs.Int("months", 12, "months of history")
		seed := fs.Int64("seed", 7, "simulation seed")
		serve := fs.Bool("serve", false, "keep the stack and the console running after the summary, until Ctrl-C")
		dir := fs.String("dir", "", "directory for dev.env (with --serve), the dev key and Redis files (default: a new temp dir)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *dir != "" {
			abs, err := filepath.Abs(*dir)
			if err != nil {
				return err
			}
			*dir = abs
		}
		_, err := demo.Run(ctx, demo.Options{Customers: *n, Months: *months, Seed: *seed, Out: os.Stdout, Logs: logOut(*logs), Serve: *serve, Dir: *dir})
		if errors.Is(err, context.Canceled) && *serve {
			return nil
		}
		return err
	case "broker":
		port := fs.Int("port", 0, "listen port on 127.0.0.1 (0 = any)")
		parts := fs.Int("partitions", 3, "partitions per topic")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return broker(ctx, *port, *parts)
	case "bench":
		n := fs.Int("customers", 2000, "simulated customers")
		months := fs.Int("months", 12, "months of history")
		seed := fs.Int64("seed", 1, "simulation seed")
		rate := fs.Int("rate", 2000, "events/s of the steady latency phase")
		dur := fs.Duration("for", 20*time.Second, "length of the latency phase")
		prof := fs.String("cpuprofile", "", "write a CPU profile of the services during the pipeline phase to this file")
		allocs := fs.String("allocprofile", "", "write allocation profiles at the start and end of the pipeline phase to FILE.before and FILE.after")
		kafkaMode := fs.String("kafka", "embedded", "embedded (kfake in its own process) or real (scripts/kafka.sh, three brokers)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		o := bench.Options{Customers: *n, Months: *months, Seed: *seed, LatencyRate: *rate, LatencyFor: *dur, Log: os.Stderr}
		if *prof != "" {
			f, err := os.Create(*prof)
			if err != nil {
				return err
			}
			defer f.Close()
			o.PipelineProfile = f
		}
		if *allocs != "" {
			for _, w := range []struct {
				suffix string
				to     *io.Writer
			}{{".before", &o.AllocsBefore}, {".after", &o.AllocsAfter}} {
				f, err := os.Create(*allocs + w.suffix)
				if err != nil {
					return err
				}
				defer f.Close()
				*w.to = f
			}
		}
		return runBench(ctx, *kafkaMode, o)
	case "chaos":
		var o chaos.Options
		fs.StringVar(&o.Kafka, "kafka", "real", "real (scripts/kafka.sh, three brokers) or embedded (kfake in its own process)")
		fs.IntVar(&o.Kills, "kills", 12, "service-instance kills (SIGKILL, then a restart), at least")
		fs.IntVar(&o.Customers, "customers", 1100, "simulated customers (about 38 events per customer-month)")
		fs.IntVar(&o.Months, "months", 12, "months of history")
		fs.Int64Var(&o.Seed, "seed", 1, "simulation and fault-plan seed")
		fs.StringVar(&o.Dir, "dir", "", "directory for logs, Redis's AOF and Kafka's data (default: a new temp dir, kept)")
		fs.IntVar(&o.Partitions, "partitions", 6, "partitions per topic")
		fs.IntVar(&o.Batch, "batch", 2000, "events per PublishEvents call")
		fs.DurationVar(&o.CatchupTimeout, "catchup-timeout", 5*time.Minute, "longest wait for the pipeline to catch up after the last ingest call")
		fs.StringVar(&o.KafkaScript, "kafka-script", "", "the real cluster's script (default scripts/kafka.sh in the repository)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return runChaos(ctx, o)
	default:
		return fmt.Errorf("unknown command %q (churnwatch --help)", args[0])
	}
}

func logOut(on bool) io.Writer {
	if on {
		return os.Stderr
	}
	return io.Discard
}

func dev(ctx context.Context, dir string, anyPort bool, logs io.Writer) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	st, err := devstack.Start(ctx, devstack.Options{Dir: abs, AnyPort: anyPort, Logs: logs})
	if err != nil {
		return err
	}
	envFile, err := st.WriteEnvFile()
	if err != nil {
		st.Close()
		return err
	}
	e := st.Env()
	fmt.Printf("churnwatch dev is running\n  ingester %s (http %s)\n  rules    %s (http %s)\n  alerts   %s (http %s)\n  console  %s (dev mode)\n  kafka    %s (embedded kfake unless configured)\n  redis    %s\n\n  . %s    # then: churnctl status, churnctl ingest FILE, churnctl watch\n\n",
		e["CHURNWATCH_INGESTER_ADDR"], e["CHURNWATCH_INGESTER_HTTP"], e["CHURNWATCH_RULES_ADDR"], e["CHURNWATCH_RULES_HTTP"],
		e["CHURNWATCH_ALERTS_ADDR"], e["CHURNWATCH_ALERTS_HTTP"], e["CHURNWATCH_CONSOLE_URL"], e["CHURNWATCH_KAFKA_BROKERS"], e["CHURNWATCH_REDIS_ADDR"], envFile)
	demo.PrintSignIn(os.Stdout, st.ConsoleURL(), "rm-001", "br-01")
	fmt.Println("Ctrl-C stops.")
	<-ctx.Done()
	fmt.Println("stopping…")
	return st.Close()
}
