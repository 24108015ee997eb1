package service

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestCommandExec(t *testing.T) {
	ran, probed := 0, 0
	var healthErr, runErr error
	c := Command{Name: "svc", Version: "1.2.3",
		Usage:       func(w io.Writer) { io.WriteString(w, "svc — usage\n") },
		Healthcheck: func(context.Context) error { probed++; return healthErr },
		Run:         func(context.Context) error { ran++; return runErr }}
	exec := func(args ...string) (int, string, string) {
		var out, errw bytes.Buffer
		code := c.Exec(context.Background(), args, &out, &errw)
		return code, out.String(), errw.String()
	}
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"--help"}, 0, "svc — usage\n", ""},
		{[]string{"version"}, 0, "1.2.3\n", ""},
		{[]string{"serve"}, 2, "", `svc: unknown argument "serve" (try --help)`},
		{[]string{"healthcheck"}, 0, "", ""},
		{nil, 0, "", ""},
	} {
		code, out, errs := exec(tc.args...)
		if code != tc.code || out != tc.stdout || strings.TrimSpace(errs) != tc.stderr {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, out, errs, tc.code, tc.stdout, tc.stderr)
		}
	}
	if ran != 1 || probed != 1 {
		t.Errorf("ran %d, probed %d: want one each", ran, probed)
	}
	healthErr, runErr = errors.New("not serving"), errors.New("configuration: bad")
	if code, _, errs := exec("healthcheck"); code != 1 || errs != "svc unhealthy: not serving\n" {
		t.Errorf("failed health check: exit %d, %q", code, errs)
	}
	if code, _, errs := exec(); code != 1 || errs != "svc: configuration: bad\n" {
		t.Errorf("failed run: exit %d, %q", code, errs)
	}
}
