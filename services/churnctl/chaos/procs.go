package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/embedded"
)

// process is one child process the harness can SIGKILL and start again with
// the same command line, environment and ports. Its output is appended to
// one log file across restarts.
type process struct {
	name string
	path string
	args []string
	env  []string
	log  string
	// ready waits until a fresh start serves (gRPC health, Redis PING).
	ready func(ctx context.Context) error

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// down is true from a kill until the restart has been made.
	down bool
}

func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is already running", p.name)
		}
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "\n=== chaos: start %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	// The harness dying takes its children with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.cmd, p.done, p.down = cmd, done, false
	return nil
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *process) kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return fmt.Errorf("%s was never started", p.name)
	}
	select {
	case <-done:
		p.mu.Unlock()
		return fmt.Errorf("%s is not running", p.name)
	default:
	}
	p.down = true
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return nil
}

// remove ends the process gracefully (SIGTERM: it leaves its consumer
// group and flushes, as a scale-down or rolling restart does) and marks it
// down until started again.
func (p *process) remove() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return fmt.Errorf("%s was never started", p.name)
	}
	p.down = true
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

// startReady starts the process again and waits until it is ready.
func (p *process) startReady(ctx context.Context) error {
	if err := p.start(); err != nil {
		return err
	}
	return p.waitReady(ctx, 60*time.Second)
}

// exited reports whether the process has ended without being killed by
// the harness (a crash of its own).
func (p *process) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.down {
		return false
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.down {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop ends the process at the end of a run: SIGTERM, then SIGKILL.
func (p *process) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

func (p *process) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		select {
		case <-done:
			return fmt.Errorf("%s exited during start (see %s)", p.name, p.log)
		default:
		}
		err := p.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w (see %s)", p.name, timeout, err, p.log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// service is one instance of ingester, rules or alerts.
type service struct {
	*process
	kind     string // ingester, rules, alerts
	grpcAddr string
	httpAddr string
}

func newService(kind string, n int, bin, dir string, env map[string]string) (*service, error) {
	gp, err := embedded.FreePort()
	if err != nil {
		return nil, err
	}
	hp, err := embedded.FreePort()
	if err != nil {
		return nil, err
	}
	s := &service{kind: kind, grpcAddr: "127.0.0.1:" + strconv.Itoa(gp), httpAddr: "127.0.0.1:" + strconv.Itoa(hp)}
	e := map[string]string{}
	for k, v := range env {
		e[k] = v
	}
	e["CHURNWATCH_GRPC_ADDR"], e["CHURNWATCH_HTTP_ADDR"] = s.grpcAddr, s.httpAddr
	name := fmt.Sprintf("%s-%d", kind, n)
	s.process = &process{name: name, path: bin, env: environ(e), log: filepath.Join(dir, name+".log"),
		ready: func(ctx context.Context) error {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return client.CheckHealth(cctx, s.grpcAddr, client.TLS{})
		}}
	return s, nil
}

// environ is the child's environment: the harness's own, minus any
// CHURNWATCH_ and OTEL_ settings, plus env.
func environ(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CHURNWATCH_") && !strings.HasPrefix(kv, "OTEL_") {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// appendfsync is the Redis durability setting of the run: every write is
// fsynced before Redis replies, so a SIGKILL of Redis loses nothing that
// was acknowledged (with everysec a kill could lose up to a second).
const appendfsync = "always"

func newRedis(dir string) (*process, string, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, "", embedded.ErrNoRedisServer
	}
	port, err := embedded.FreePort()
	if err != nil {
		return nil, "", err
	}
	data := filepath.Join(dir, "redis")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	p := &process{name: "redis", path: "redis-server", env: os.Environ(), log: filepath.Join(dir, "redis.log"),
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", data,
			"--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
			"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"},
		// PING answers LOADING until the AOF is replayed.
		ready: func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
	}
	return p, addr, nil
}

// cluster is the Kafka the run uses.
type cluster interface {
	Brokers() []string
	// Nodes is how many brokers may be killed (0: the embedded broker,
	// which keeps everything in memory and so cannot be).
	Nodes() int
	Kill(ctx context.Context, node int) error
	Restart(ctx context.Context, node int) error
	Close()
}

// embeddedBroker is `churnwatch broker` (kfake) in its own process.
type embeddedBroker struct {
	p       *process
	brokers []string
}

func startEmbedded(ctx context.Context, command []string, partitions int, dir string) (*embeddedBroker, error) {
	if len(command) == 0 {
		return nil, errors.New("no command for the embedded broker (churnwatch broker)")
	}
	port, err := embedded.FreePort()
	if err != nil {
		return nil, err
	}
	args := append(append([]string(nil), command[1:]...), "--port", strconv.Itoa(port), "--partitions", strconv.Itoa(partitions))
	cmd := exec.CommandContext(ctx, command[0], args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(dir, "broker.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start broker process: %w", err)
	}
	done := make(chan struct{})
	line, err := bufio.NewReader(out).ReadString('\n')
	go func() { _, _ = io.Copy(logf, out); _ = cmd.Wait(); logf.Close(); close(done) }()
	p := &process{name: "broker", cmd: cmd, done: done}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("broker process: %w", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "broker ")
	if !ok {
		p.stop()
		return nil, fmt.Errorf("broker process said %q", line)
	}
	return &embeddedBroker{p: p, brokers: strings.Split(addr, ",")}, nil
}

func (b *embeddedBroker) Brokers() []string { return b.brokers }
func (b *embeddedBroker) Nodes() int        { return 0 }
func (b *embeddedBroker) Kill(context.Context, int) error {
	return errors.New("the embedded broker is not killed")
}
func (b *embeddedBroker) Restart(context.Context, int) error { return nil }
func (b *embeddedBroker) Close()                             { b.p.stop() }

// realKafka is a three-broker Apache Kafka cluster run by scripts/kafka.sh.
type realKafka struct {
	script  string
	dir     string
	brokers []string
	log     string
}

func startReal(ctx context.Context, script, dir string, nodes int) (*realKafka, error) {
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("real Kafka needs %s (or use --kafka embedded): %w", script, err)
	}
	k := &realKafka{script: script, dir: filepath.Join(dir, "kafka"), log: filepath.Join(dir, "kafka-script.log")}
	if err := k.run(ctx, "start", "--dir", k.dir, "--brokers", strconv.Itoa(nodes)); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(k.dir, "kafka.env"))
	if err != nil {
		k.Close()
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "export ")
		if v, ok := strings.CutPrefix(line, "CHURNWATCH_KAFKA_BROKERS="); ok {
			k.brokers = strings.Split(strings.Trim(v, `"'`), ",")
		}
	}
	if len(k.brokers) == 0 {
		k.Close()
		return nil, fmt.Errorf("%s/kafka.env has no CHURNWATCH_KAFKA_BROKERS", k.dir)
	}
	return k, nil
}

func (k *realKafka) run(ctx context.Context, args ...string) error {
	f, err := os.OpenFile(k.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "\n=== chaos: %s %s\n", k.script, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, k.script, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w (see %s)", filepath.Base(k.script), strings.Join(args, " "), err, k.log)
	}
	return nil
}

func (k *realKafka) Brokers() []string { return k.brokers }
func (k *realKafka) Nodes() int        { return len(k.brokers) }

// Kill SIGKILLs broker node (1-based, as scripts/kafka.sh numbers them).
func (k *realKafka) Kill(ctx context.Context, node int) error {
	return k.run(ctx, "kill", "--dir", k.dir, "--node", strconv.Itoa(node))
}

func (k *realKafka) Restart(ctx context.Context, node int) error {
	return k.run(ctx, "start-node", "--dir", k.dir, "--node", strconv.Itoa(node))
}

func (k *realKafka) Close() {
	_ = k.run(context.Background(), "stop", "--dir", k.dir)
}
