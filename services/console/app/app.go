// Package app is the churnwatch console server: the built web app (package
// web), sign-in (OpenID Connect with PKCE, or /dev/login in dev mode), and
// /rpc/, the browser API of the services reached with the signed-in user's
// token (package proxy). It holds no business logic: every call is the
// services' own, under their access table.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/console/internal/proxy"
	"github.com/churnwatch/churnwatch/services/console/internal/session"
	"github.com/churnwatch/churnwatch/services/console/internal/signin"
	"github.com/churnwatch/churnwatch/services/console/internal/spa"
	"github.com/churnwatch/churnwatch/services/console/web"
	"github.com/churnwatch/churnwatch/services/platform/auth"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/logging"
)

// Routes is the one table of services the browser reaches through
// /rpc/<service>/<method>, and the configured HTTP base URL of each. A new
// service (KPIs) is one line here and one setting.
func Routes(c Config) ([]proxy.Route, error) {
	table := []struct{ service, url string }{
		{cwv1.AlertService_ServiceDesc.ServiceName, c.AlertsURL},
		{cwv1.RulesAdminService_ServiceDesc.ServiceName, c.RulesURL},
		// KpiService and ShadowService are served by the rules service too
		// (docs/kpis.md, docs/rules.md).
		{cwv1.KpiService_ServiceDesc.ServiceName, c.RulesURL},
		{cwv1.ShadowService_ServiceDesc.ServiceName, c.RulesURL},
	}
	routes := make([]proxy.Route, 0, len(table))
	for _, t := range table {
		u, err := url.Parse(t.url)
		if err != nil {
			return nil, fmt.Errorf("%s upstream: %w", t.service, err)
		}
		routes = append(routes, proxy.Route{Service: t.service, Upstream: u})
	}
	return routes, nil
}

// App is one console instance.
type App struct {
	cfg    Config
	log    *slog.Logger
	lis    net.Listener
	srv    *http.Server
	tls    bool
	signin *signin.Handlers
	closer func()
}

type options struct {
	logOutput io.Writer
	listener  net.Listener
	mint      signin.Minter
	idp       *http.Client
}

// Option tunes New.
type Option func(*options)

// WithLogOutput sends the JSON logs to w (default stderr).
func WithLogOutput(w io.Writer) Option { return func(o *options) { o.logOutput = w } }

// WithListener serves on l instead of binding CHURNWATCH_CONSOLE_ADDR (the
// dev stack binds first, to tell the alerts service the console's URL).
func WithListener(l net.Listener) Option { return func(o *options) { o.listener = l } }

// WithDevMinter mints dev-mode tokens with m instead of CHURNWATCH_DEV_KEY.
func WithDevMinter(m signin.Minter) Option { return func(o *options) { o.mint = m } }

// WithIdPClient reaches the IdP with c (its CA; tests).
func WithIdPClient(c *http.Client) Option { return func(o *options) { o.idp = c } }

// New builds the console: configuration checked, the IdP discovered,
// the listener bound. It does not block.
func New(ctx context.Context, cfg Config, opts ...Option) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	o := options{logOutput: os.Stderr}
	for _, opt := range opts {
		opt(&o)
	}
	a := &App{cfg: cfg, log: logging.New(o.logOutput, "console", cfg.Common.LogLevel), tls: cfg.Common.TLSCert != ""}
	a.log.Info("configured", config.Attrs(cfg.Fields())...)
	if cfg.Dev {
		a.log.Warn("DEV MODE: /dev/login signs anyone in as any principal; never expose this console beyond a development machine")
	}

	var idp *signin.OIDC
	common := cfg.Common
	if cfg.OIDC() {
		var err error
		idp, err = signin.DiscoverOIDC(ctx, signin.OIDCConfig{
			Issuer: cfg.OIDCIssuer, ClientID: cfg.OIDCClientID, ClientSecret: cfg.oidcSecret,
			RedirectURL: cfg.OIDCRedirect, Scopes: cfg.OIDCScopes, HTTPClient: o.idp,
		})
		if err != nil {
			return nil, err
		}
		if common.Auth.JWKSURL == "" {
			common.Auth.JWKSURL = idp.JWKSURL() // the IdP's keys, as the services should use
		}
	}
	verifier, err := auth.FromConfig(ctx, common, a.log)
	if err != nil {
		return nil, fmt.Errorf("token verification: %w", err)
	}
	a.closer = verifier.Close

	mint := o.mint
	if cfg.Dev && mint == nil {
		signer, err := auth.LoadSigner(cfg.DevKey)
		if err != nil {
			return nil, fmt.Errorf("CHURNWATCH_DEV_KEY: %w", err)
		}
		mo := auth.MintOptions{Issuer: common.Auth.Issuer, Audience: common.Auth.Audience}
		mint = func(p auth.Principal, ttl time.Duration) (string, error) { return auth.MintWith(signer, p, ttl, mo) }
	}

	key := session.RandomKey()
	if cfg.SessionKeyFile != "" {
		if key, err = session.LoadKey(cfg.SessionKeyFile); err != nil {
			return nil, fmt.Errorf("CHURNWATCH_CONSOLE_SESSION_KEY_FILE: %w", err)
		}
	}
	lis := o.listener
	if lis == nil {
		if lis, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("listen %s (CHURNWATCH_CONSOLE_ADDR): %w", cfg.Addr, err)
		}
	}
	a.lis = lis
	jar, err := session.NewJar(key, a.secureCookies())
	if err != nil {
		return nil, err
	}
	if a.signin, err = signin.New(signin.Options{Jar: jar, Verifier: verifier, OIDC: idp, Dev: cfg.Dev, DevMint: mint, DevTTL: cfg.DevTTL, SessionMax: cfg.SessionMax, Log: a.log}); err != nil {
		return nil, err
	}
	h, err := a.handler()
	if err != nil {
		lis.Close()
		return nil, err
	}
	l := cfg.Common.Limits
	a.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.HTTPReadHeaderTimeout,
		ReadTimeout:       l.HTTPReadTimeout,
		WriteTimeout:      l.HTTPWriteTimeout,
		IdleTimeout:       l.HTTPIdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	if a.tls {
		cert, err := tls.LoadX509KeyPair(cfg.Common.TLSCert, cfg.Common.TLSKey)
		if err != nil {
			lis.Close()
			return nil, fmt.Errorf("CHURNWATCH_TLS_CERT/_KEY: %w", err)
		}
		a.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return a, nil
}

// secureCookies: Secure cookies unless the console is plain HTTP on a
// loopback address (a development machine).
func (a *App) secureCookies() bool {
	if a.tls || strings.HasPrefix(a.publicOrigin(), "https://") {
		return true
	}
	host, _, _ := net.SplitHostPort(a.lis.Addr().String())
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// publicOrigin is the origin users open, when configured or implied by the
// IdP redirect URL.
func (a *App) publicOrigin() string {
	for _, s := range []string{a.cfg.PublicURL, a.cfg.OIDCRedirect} {
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			return u.Scheme + "://" + u.Host
		}
	}
	return ""
}

func (a *App) handler() (http.Handler, error) {
	routes, err := Routes(a.cfg)
	if err != nil {
		return nil, err
	}
	tc, err := client.TLS{CAFile: a.cfg.UpstreamCA, CertFile: a.cfg.ClientCert, KeyFile: a.cfg.ClientKey}.Config()
	if err != nil {
		return nil, fmt.Errorf("upstream TLS (CHURNWATCH_CONSOLE_UPSTREAM_CA, _TLS_CLIENT_CERT): %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.ResponseHeaderTimeout = 30 * time.Second
	var origins []string
	if o := a.publicOrigin(); o != "" {
		origins = append(origins, o)
	}
	rpc, err := proxy.New(routes, tr, a.signin.Token, origins, a.log)
	if err != nil {
		return nil, err
	}
	app, err := spa.New(web.Dist())
	if err != nil {
		return nil, fmt.Errorf("web bundle: %w (run make console)", err)
	}
	mux := http.NewServeMux()
	a.signin.Register(mux)
	mux.Handle(proxy.Prefix, rpc)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ready\n") })
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"no such API path"}`+"\n")
	})
	mux.Handle("/", app)
	hsts := a.tls || strings.HasPrefix(a.publicOrigin(), "https://")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		spa.SecurityHeaders(w.Header(), hsts)
		mux.ServeHTTP(w, r)
	}), nil
}

// Addr is the bound address.
func (a *App) Addr() string { return a.lis.Addr().String() }

// URL is the console's base URL as reached on its listener.
func (a *App) URL() string {
	if a.tls {
		return "https://" + a.Addr()
	}
	return "http://" + a.Addr()
}

// Run serves until ctx ends, then lets requests finish for the shutdown
// grace (open Subscribe streams are cut: the app resumes them by cursor).
func (a *App) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		var err error
		if a.tls {
			err = a.srv.ServeTLS(a.lis, "", "")
		} else {
			err = a.srv.Serve(a.lis)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
		close(errc)
	}()
	a.log.Info("serving", "url", a.URL(), "dev", a.cfg.Dev, "oidc", a.cfg.OIDC())
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.Common.ShutdownGrace)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil {
		_ = a.srv.Close() // streams still open after the grace period
	}
	a.closer()
	a.log.Info("stopped")
	return runErr
}
