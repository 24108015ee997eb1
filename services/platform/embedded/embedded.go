// Package embedded runs the infrastructure churnwatch needs inside a dev or
// test process: a Kafka-protocol broker (franz-go's kfake, in-process) and a
// Redis (a child redis-server on a free loopback port).
package embedded

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an in-process Kafka-protocol broker.
type Kafka struct {
	cluster *kfake.Cluster
	Brokers []string
}

// StartKafka starts a one-broker kfake cluster on 127.0.0.1 (port 0 = any)
// with the given topics created with partitions partitions each.
func StartKafka(port, partitions int, topics ...string) (*Kafka, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.ListenFn(func(network, _ string) (net.Listener, error) {
		return net.Listen(network, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	})}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(partitions), topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start kfake: %w", err)
	}
	return &Kafka{cluster: c, Brokers: c.ListenAddrs()}, nil
}

// Close stops the broker.
func (k *Kafka) Close() { k.cluster.Close() }

// Redis is a child redis-server process.
type Redis struct {
	Addr string
	dir  string
	port int
	sec  RedisSecurity
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// ErrNoRedisServer is returned when redis-server is not on PATH.
var ErrNoRedisServer = errors.New("redis-server not found on PATH (scripts/setup.sh installs it)")

// StartRedis starts redis-server on a free loopback port (or port when not 0)
// keeping its files in dir (a temporary directory when empty). Persistence
// is append-only so that a Restart keeps the data, like a production Redis.
func StartRedis(dir string, port int) (*Redis, error) {
	dir, port, err := redisPlace(dir, port)
	if err != nil {
		return nil, err
	}
	r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, port: port}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

// redisPlace checks that redis-server is there and picks a temporary
// directory and a free port where none is given.
func redisPlace(dir string, port int) (string, int, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return "", 0, ErrNoRedisServer
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "churnwatch-redis-")
		if err != nil {
			return "", 0, err
		}
		dir = d
	}
	if port == 0 {
		p, err := FreePort()
		if err != nil {
			return "", 0, err
		}
		port = p
	}
	return dir, port, nil
}

// RedisSecurity makes a Redis that speaks TLS only and knows one ACL user
// (the default user is disabled). The password goes to redis-server in an
// ACL file (0600), never on its command line.
type RedisSecurity struct {
	CertFile, KeyFile, CAFile string
	User, Password            string
}

// StartSecureRedis is StartRedis with TLS on the port (no plaintext port)
// and the ACL user of sec.
func StartSecureRedis(dir string, port int, sec RedisSecurity) (*Redis, error) {
	if sec.CertFile == "" || sec.KeyFile == "" || sec.CAFile == "" || sec.User == "" || sec.Password == "" {
		return nil, errors.New("secure redis: certificate, key, CA, user and password are all needed")
	}
	dir, port, err := redisPlace(dir, port)
	if err != nil {
		return nil, err
	}
	acl := fmt.Sprintf("user default off\nuser %s on >%s ~* &* +@all\n", sec.User, sec.Password)
	if err := os.WriteFile(filepath.Join(dir, "users.acl"), []byte(acl), 0o600); err != nil {
		return nil, err
	}
	r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, port: port, sec: sec}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "no",
		"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"}
	var tc *tls.Config
	if r.sec.CertFile != "" {
		args = append(args[:0:0], "--port", "0", "--tls-port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
			"--tls-cert-file", r.sec.CertFile, "--tls-key-file", r.sec.KeyFile, "--tls-ca-cert-file", r.sec.CAFile,
			"--tls-auth-clients", "no", "--aclfile", filepath.Join(r.dir, "users.acl"),
			"--dir", r.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "no",
			"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning")
		pem, err := os.ReadFile(r.sec.CAFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tc = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	}
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(r.dir, "redis.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.cmd = cmd
	r.done = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); logf.Close(); close(done) }(r.done)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ping(r.Addr, tc) == nil {
			return nil
		}
		select {
		case <-r.done:
			return fmt.Errorf("redis-server exited at start; see %s", filepath.Join(r.dir, "redis.log"))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("redis-server on %s not ready after 10s", r.Addr)
}

// ping checks that redis-server answers; over TLS (tc set), an answer
// asking for authentication counts as up.
func ping(addr string, tc *tls.Config) error {
	var c net.Conn
	var err error
	if tc != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 200 * time.Millisecond}, "tcp", addr, tc)
	} else {
		c, err = net.DialTimeout("tcp", addr, 200*time.Millisecond)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if tc != nil && strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// Stop shuts redis-server down and waits for it to exit.
func (r *Redis) Stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart stops and starts redis-server on the same port and data directory.
func (r *Redis) Restart() error {
	r.Stop()
	return r.start()
}

// Close stops the server.
func (r *Redis) Close() { r.Stop() }

// Dir is where the server keeps its files.
func (r *Redis) Dir() string { return r.dir }

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitTCP waits until addr accepts connections.
func WaitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
