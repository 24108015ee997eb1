package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// KafkaCluster is a real Apache Kafka cluster on loopback, run by
// scripts/kafka.sh (KRaft, every node broker and controller). KAFKA_VERSION
// picks the release, as for the script.
type KafkaCluster struct {
	Dir     string
	Brokers []string
	Nodes   int
	// Secure clusters (SecureRealKafka) take SASL_SSL only; Env holds the
	// CHURNWATCH_KAFKA_* client settings from D/kafka.env (CA, client
	// certificate, SASL user and password file).
	Secure  bool
	Env     map[string]string
	script  string
	stopped sync.Once
}

// RealKafka starts a cluster of n nodes (1 or 3) for the test and stops it
// at cleanup. A missing java, mvn or kcat fails the test: `make test`
// installs them (scripts/setup.sh).
func RealKafka(t testing.TB, n int) *KafkaCluster {
	t.Helper()
	c, err := StartRealKafka(n)
	if err != nil {
		t.Fatalf("real kafka: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop kafka: %v", err)
		}
	})
	return c
}

var shared = struct {
	sync.Mutex
	clusters map[int]*KafkaCluster
}{clusters: map[int]*KafkaCluster{}}

// SharedRealKafka is RealKafka with one cluster of n nodes per test binary,
// started by the first test that asks; TestMain stops it with
// StopSharedKafka after m.Run. Tests sharing it use their own topics or
// groups.
func SharedRealKafka(t testing.TB, n int) *KafkaCluster {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if c := shared.clusters[n]; c != nil {
		return c
	}
	c, err := StartRealKafka(n)
	if err != nil {
		t.Fatalf("real kafka: %v", err)
	}
	shared.clusters[n] = c
	return c
}

// StopSharedKafka stops the clusters SharedRealKafka started.
func StopSharedKafka() error {
	shared.Lock()
	defer shared.Unlock()
	var errs []error
	for n, c := range shared.clusters {
		errs = append(errs, c.Stop())
		delete(shared.clusters, n)
	}
	return errors.Join(errs...)
}

// SecureRealKafka is RealKafka started with scripts/kafka.sh --sasl-ssl.
func SecureRealKafka(t testing.TB, n int) *KafkaCluster {
	t.Helper()
	c, err := startRealKafka(n, true)
	if err != nil {
		t.Fatalf("real kafka (SASL_SSL): %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop kafka: %v", err)
		}
	})
	return c
}

// StartRealKafka starts a cluster in a fresh temporary directory; the
// caller stops it. If the process dies first, the script stops the nodes
// (KAFKA_WATCH_PID).
func StartRealKafka(n int) (*KafkaCluster, error) { return startRealKafka(n, false) }

// StartSecureRealKafka is StartRealKafka with --sasl-ssl.
func StartSecureRealKafka(n int) (*KafkaCluster, error) { return startRealKafka(n, true) }

func startRealKafka(n int, secure bool) (*KafkaCluster, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "churnwatch-kafka-")
	if err != nil {
		return nil, err
	}
	c := &KafkaCluster{Dir: dir, Nodes: n, Secure: secure, script: filepath.Join(root, "scripts", "kafka.sh")}
	ports, args := 2*n, []string{"start", "--brokers", strconv.Itoa(n)}
	if secure {
		ports, args = 3*n, append(args, "--sasl-ssl")
	}
	port, err := freePortRange(ports)
	if err != nil {
		return nil, err
	}
	out, err := c.run(append(args, "--base-port", strconv.Itoa(port))...)
	if err != nil {
		_, _ = c.run("stop", "--now")
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	c.Brokers = strings.Split(lines[len(lines)-1], ",")
	if len(c.Brokers) != n {
		_ = c.Stop()
		return nil, fmt.Errorf("kafka.sh start printed %q, want %d brokers", out, n)
	}
	if c.Env, err = readEnvFile(filepath.Join(dir, "kafka.env")); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// Kill SIGKILLs node (1-based).
func (c *KafkaCluster) Kill(node int) error {
	_, err := c.run("kill", "--node", strconv.Itoa(node))
	return err
}

// StartNode restarts node on its data and waits until it is back in the
// cluster.
func (c *KafkaCluster) StartNode(node int) error {
	_, err := c.run("start-node", "--node", strconv.Itoa(node))
	return err
}

// Stop kills every node and removes the cluster's directory (kept when
// KAFKA_KEEP_DIR is set, for reading the broker logs). A test cluster's data
// is thrown away, so there is nothing to wait a graceful shutdown for.
func (c *KafkaCluster) Stop() error {
	var err error
	c.stopped.Do(func() {
		_, err = c.run("stop", "--now")
		if err == nil && os.Getenv("KAFKA_KEEP_DIR") == "" {
			err = os.RemoveAll(c.Dir)
		}
	})
	return err
}

func (c *KafkaCluster) run(args ...string) (string, error) {
	cmd := exec.Command(c.script, append(args[:1:1], append([]string{"--dir", c.Dir}, args[1:]...)...)...)
	cmd.Env = append(os.Environ(), "KAFKA_WATCH_PID="+strconv.Itoa(os.Getpid()))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kafka.sh %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// RepoRoot is the directory holding go.work, found from the working
// directory upwards.
func RepoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("go.work not found above the working directory")
		}
		d = p
	}
}

// freePortRange finds n consecutive free loopback ports, so that node k of
// a cluster gets base+2(k-1) and base+2(k-1)+1.
func freePortRange(n int) (int, error) {
	for try := 0; try < 50; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		base := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if base+n > 65535 {
			continue
		}
		ok := true
		var held []net.Listener
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if ok {
			return base, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, errors.New("no range of free loopback ports found")
}

// readEnvFile reads `export K=V` lines.
func readEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "export "), "=")
		if ok && !strings.HasPrefix(k, "#") {
			env[k] = strings.Trim(v, `"'`)
		}
	}
	return env, nil
}
