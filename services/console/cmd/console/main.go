// Command console is the churnwatch console server: the web app, sign-in
// and the browser API of the services.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/churnwatch/churnwatch/services/console/app"
	"github.com/churnwatch/churnwatch/services/platform/config"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx)
	stop()
	os.Exit(code)
}

func run(ctx context.Context) int {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "healthcheck":
			return healthcheck(ctx)
		case "-h", "--help", "help":
			usage()
			return 0
		default:
			fmt.Fprintf(os.Stderr, "console: unknown argument %q (console --help)\n", os.Args[1])
			return 2
		}
	}
	cfg, err := app.LoadConfig(config.FromOS())
	if err != nil {
		fmt.Fprintln(os.Stderr, "console: configuration:", err)
		return 1
	}
	a, err := app.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "console:", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "console:", err)
		return 1
	}
	return 0
}

// healthcheck asks the console's own /healthz on its address, for
// container HEALTHCHECKs (over HTTPS when CHURNWATCH_TLS_CERT is set; the
// certificate is not checked: this is the process asking itself).
func healthcheck(ctx context.Context) int {
	addr := cmp.Or(os.Getenv("CHURNWATCH_CONSOLE_ADDR"), "127.0.0.1:8080")
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	scheme, hc := "http://", &http.Client{}
	if os.Getenv("CHURNWATCH_TLS_CERT") != "" {
		scheme = "https://"
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the process probing itself
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, scheme+addr+"/healthz", nil)
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "unhealthy:", resp.Status)
		return 1
	}
	return 0
}

func usage() {
	fmt.Printf(`console %s — the churnwatch console server

Serves the console web app (inbox, alert pages) to RMs, branch heads and
ops; signs them in at the bank's IdP (OpenID Connect, authorization code
with PKCE) and forwards the app's calls under /rpc/ to the services' HTTP
ports (Connect / gRPC-Web) with the signed-in user's token, which never
reaches the browser. See docs/console-deploy.md.

Usage: console [healthcheck | -h]

Routes: / and the app's pages · GET /api/session · GET /login?next=PATH ·
GET /auth/callback · POST /logout · GET /dev/login (dev mode only) ·
POST /rpc/churnwatch.v1.AlertService/*, /rpc/churnwatch.v1.RulesAdminService/* and
/rpc/churnwatch.v1.KpiService/* ·
GET /healthz /readyz

Environment (default):
`, version)
	config.WriteSettings(os.Stdout, app.Settings)
	fmt.Println("\nToken verification (the same values as the services'; the role, branch and subject claims")
	fmt.Println("say who is signed in; with an IdP and no JWKS URL, the IdP's discovered jwks_uri is used):")
	var auth []config.Setting
	for _, s := range config.AuthSettings {
		auth = append(auth, config.Setting(s))
	}
	config.WriteSettings(os.Stdout, auth)
	fmt.Println("\nTLS and limits: CHURNWATCH_TLS_CERT/_TLS_KEY (HTTPS on the console's port), and the HTTP timeouts:")
	var timeouts []config.Setting
	for _, s := range config.TransportSettings {
		if strings.HasPrefix(s.Name, "CHURNWATCH_HTTP_") && strings.HasSuffix(s.Name, "_TIMEOUT") {
			timeouts = append(timeouts, s)
		}
	}
	config.WriteSettings(os.Stdout, timeouts)
	fmt.Println("  CHURNWATCH_LOG_LEVEL                     debug, info, warn, error (info)")
	fmt.Println("  CHURNWATCH_SHUTDOWN_GRACE                time open requests get at shutdown (10s)")
}
