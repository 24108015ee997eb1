package e2e

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestChurnwatchDevBinary runs the real `churnwatch dev` binary the way a
// developer does: it must write dev.env, serve all three services (gRPC
// health SERVING, reflection listing the churnwatch.v1 services), expose the
// topics on its broker to kcat, serve /metrics that promtool accepts, let
// `churnctl token mint` sign with the dev key, and stop cleanly on SIGINT.
func TestChurnwatchDevBinary(t *testing.T) {
	grpcurl, kcat, promtool := tool(t, "grpcurl"), tool(t, "kcat"), tool(t, "promtool")
	bin := t.TempDir()
	for _, c := range []string{"churnwatch", "churnctl"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, c), "../cmd/"+c).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", c, err, out)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(bin, "churnwatch"), "dev", "--dir", dir, "--any-port")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	envFile := filepath.Join(dir, "dev.env")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(envFile); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("churnwatch dev exited early: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dev.env after 60s\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	env := readEnvFile(t, envFile)
	for _, k := range []string{"CHURNWATCH_INGESTER_ADDR", "CHURNWATCH_RULES_ADDR", "CHURNWATCH_ALERTS_ADDR", "CHURNWATCH_KAFKA_BROKERS",
		"CHURNWATCH_REDIS_ADDR", "CHURNWATCH_DEV_KEY", "CHURNWATCH_TOKEN", "CHURNWATCH_INGESTER_HTTP", "CHURNWATCH_RULES_HTTP", "CHURNWATCH_ALERTS_HTTP"} {
		if env[k] == "" {
			t.Fatalf("dev.env lacks %s:\n%v", k, env)
		}
	}
	for addrKey, svc := range map[string]string{"CHURNWATCH_INGESTER_ADDR": "churnwatch.v1.IngestService", "CHURNWATCH_RULES_ADDR": "churnwatch.v1.RulesAdminService", "CHURNWATCH_ALERTS_ADDR": "churnwatch.v1.AlertService"} {
		o, err := exec.Command(grpcurl, "-plaintext", env[addrKey], "list").CombinedOutput()
		if err != nil || !strings.Contains(string(o), svc) {
			t.Fatalf("grpcurl list %s: %v\n%s", env[addrKey], err, o)
		}
		o, err = exec.Command(grpcurl, "-plaintext", env[addrKey], "grpc.health.v1.Health/Check").CombinedOutput()
		if err != nil || !strings.Contains(string(o), `"SERVING"`) {
			t.Fatalf("health %s: %v\n%s", env[addrKey], err, o)
		}
	}
	if o, err := exec.Command(kcat, "-b", env["CHURNWATCH_KAFKA_BROKERS"], "-L").CombinedOutput(); err != nil || !strings.Contains(string(o), `topic "churnwatch.events.v1" with 3 partitions`) {
		t.Fatalf("kcat -L: %v\n%s", err, o)
	}
	for _, k := range []string{"CHURNWATCH_INGESTER_HTTP", "CHURNWATCH_RULES_HTTP", "CHURNWATCH_ALERTS_HTTP"} {
		resp, err := http.Get("http://" + env[k] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pc := exec.Command(promtool, "check", "metrics")
		pc.Stdin = bytes.NewReader(body)
		if o, err := pc.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics %s: %v\n%s", env[k], err, o)
		}
	}
	// The dev key signs tokens the services accept: a manager may list its alerts.
	mint := exec.Command(filepath.Join(bin, "churnctl"), "token", "mint", "--subject", "rm-001", "--role", "manager")
	mint.Env = append(os.Environ(), "CHURNWATCH_DEV_KEY="+env["CHURNWATCH_DEV_KEY"])
	tok, err := mint.Output()
	if err != nil {
		t.Fatalf("token mint: %v", err)
	}
	list := exec.Command(filepath.Join(bin, "churnctl"), "alerts", "list", "--json")
	list.Env = append(os.Environ(), "CHURNWATCH_ALERTS_ADDR="+env["CHURNWATCH_ALERTS_ADDR"], "CHURNWATCH_TOKEN="+strings.TrimSpace(string(tok)))
	if o, err := list.CombinedOutput(); err != nil {
		t.Fatalf("churnctl alerts list with a minted manager token: %v\n%s", err, o)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("churnwatch dev did not stop cleanly on SIGINT: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("churnwatch dev still running 30s after SIGINT\n%s", out.String())
	}
}

// readEnvFile reads `export K="V"` lines.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = strings.Trim(v, `"`)
	}
	return env
}
