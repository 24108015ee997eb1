// Command console is the churnwatch console server: the web app, sign-in
// and the browser API of the services.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/churnwatch/churnwatch/services/console/app"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/service"
)

var version = "dev"

func main() {
	service.Command{Name: "console", Version: version, Usage: usage, Healthcheck: healthcheck, Run: run}.Main()
}

// run loads the configuration and runs the service until ctx ends.
func run(ctx context.Context) error {
	cfg, err := app.LoadConfig(config.FromOS())
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	a, err := app.New(ctx, cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func healthcheck(ctx context.Context) error {
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
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz answered %s", resp.Status)
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `console %s — the churnwatch console server

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
	config.WriteSettings(w, app.Settings)
	fmt.Fprintln(w, "\nToken verification (the same values as the services'; the role, branch and subject claims")
	fmt.Fprintln(w, "say who is signed in; with an IdP and no JWKS URL, the IdP's discovered jwks_uri is used):")
	var auth []config.Setting
	for _, s := range config.AuthSettings {
		auth = append(auth, config.Setting(s))
	}
	config.WriteSettings(w, auth)
	fmt.Fprintln(w, "\nTLS and limits: CHURNWATCH_TLS_CERT/_TLS_KEY (HTTPS on the console's port), and the HTTP timeouts:")
	var timeouts []config.Setting
	for _, s := range config.TransportSettings {
		if strings.HasPrefix(s.Name, "CHURNWATCH_HTTP_") && strings.HasSuffix(s.Name, "_TIMEOUT") {
			timeouts = append(timeouts, s)
		}
	}
	config.WriteSettings(w, timeouts)
	fmt.Fprintln(w, "  CHURNWATCH_LOG_LEVEL                     debug, info, warn, error (info)")
	fmt.Fprintln(w, "  CHURNWATCH_SHUTDOWN_GRACE                time open requests get at shutdown (10s)")
}

// healthcheck asks the console's own /healthz on its address, for
// container HEALTHCHECKs (over HTTPS when CHURNWATCH_TLS_CERT is set; the
// certificate is not checked: this is the process asking itself).
