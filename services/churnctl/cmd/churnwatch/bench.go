package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/churnwatch/churnwatch/services/churnctl/bench"
	"github.com/churnwatch/churnwatch/services/churnctl/chaos"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/embedded"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
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

// runBench starts the broker (kfake as a child process, or with kafka
// "real" a three-node Apache Kafka cluster by scripts/kafka.sh on free
// ports in a temporary directory, stopped at the end) and a real
// redis-server, then runs the benchmark and prints its JSON report on
// stdout.
func runBench(ctx context.Context, kafkaMode string, o bench.Options) error {
	switch kafkaMode {
	case "embedded", "":
		stop, err := startEmbeddedBroker(ctx, &o)
		if err != nil {
			return err
		}
		defer stop()
	case "real":
		stop, err := startRealKafka(ctx, &o)
		if err != nil {
			return err
		}
		defer stop()
	default:
		return fmt.Errorf("--kafka %q: want real or embedded", kafkaMode)
	}
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

// startRealKafka starts three KRaft nodes (testkit.StartRealKafka: free
// loopback ports, a temporary directory, stopped by the script's watchdog
// should this process die) and creates the topics as production has them:
// replication 3, min.insync.replicas 2, as many partitions as the embedded
// broker's.
func startRealKafka(ctx context.Context, o *bench.Options) (func(), error) {
	root, err := chaos.FindRoot()
	if err != nil {
		return nil, err
	}
	version := os.Getenv("KAFKA_VERSION")
	if version == "" {
		version = "3.9.1"
	}
	fmt.Fprintf(os.Stderr, "bench: starting Apache Kafka %s, 3 nodes\n", version)
	c, err := testkit.StartRealKafka(3)
	if err != nil {
		return nil, err
	}
	stop := func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: stop kafka: %v\n", err)
		}
	}
	topics := config.LoadCommon(config.FromOS(), "", "", "").Topics
	if _, err := kafkax.EnsureTopics(ctx, kafkax.Plain(c.Brokers), kafkax.TopicPolicy{Replication: 3, MinInsync: 2}, kafkax.Specs(topics, benchPartitions)...); err != nil {
		stop()
		return nil, fmt.Errorf("create topics: %w", err)
	}
	o.Brokers = c.Brokers
	o.Kafka = fmt.Sprintf("real %s, %d brokers", version, c.Nodes)
	o.KafkaTools = filepath.Join(root, ".tools", "kafka", version, "*")
	return stop, nil
}

// benchPartitions is the partition count of every topic in the bench, on
// either broker.
const benchPartitions = 3

func startEmbeddedBroker(ctx context.Context, o *bench.Options) (func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "broker", "--partitions", strconv.Itoa(benchPartitions))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start broker process: %w", err)
	}
	stop := func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return nil, fmt.Errorf("broker process: %w", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "broker ")
	if !ok {
		stop()
		return nil, fmt.Errorf("broker process said %q", line)
	}
	o.Brokers = strings.Split(addr, ",")
	o.Kafka = "embedded"
	return stop, nil
}
