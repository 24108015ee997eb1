// Command alerts is the churnwatch alert service.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/churnwatch/churnwatch/services/alerts/app"
	"github.com/churnwatch/churnwatch/services/platform/client"
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
			if err := client.Healthcheck(ctx, os.Getenv, "127.0.0.1:7003"); err != nil {
				fmt.Fprintln(os.Stderr, "unhealthy:", err)
				return 1
			}
			return 0
		case "-h", "--help", "help":
			usage()
			return 0
		}
	}
	cfg, err := app.LoadConfig(config.FromOS())
	if err != nil {
		fmt.Fprintln(os.Stderr, "alerts: configuration:", err)
		return 1
	}
	a, err := app.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "alerts:", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "alerts:", err)
		return 1
	}
	return 0
}

func usage() {
	fmt.Printf(`alerts %s — churnwatch alert service

Consumes risk signals (churnwatch.signals.v1) and customer profiles
(churnwatch.customers.v1), keeps at most one open alert per customer in
Redis, routes it to the customer's manager, branch head and ops, escalates
alerts not acknowledged within the tier SLA, publishes every change on
churnwatch.alerts.v1 and serves AlertService (Subscribe, ListAlerts,
GetAlert, AcknowledgeAlert, ResolveAlert, SnoozeAlert, GetRulePrecision).

Usage: alerts [healthcheck | -h]

Environment (default):
  CHURNWATCH_GRPC_ADDR              127.0.0.1:7003
  CHURNWATCH_HTTP_ADDR              :8003   (/healthz /readyz /metrics; the gRPC API in Connect / gRPC-Web)
  CHURNWATCH_KAFKA_BROKERS          127.0.0.1:9092
  CHURNWATCH_REDIS_ADDR             127.0.0.1:6379  host:port or redis(s)://user:password@host:port/db
  CHURNWATCH_REDIS_PASSWORD         (empty)
  CHURNWATCH_REDIS_DB               0
  CHURNWATCH_REDIS_ADDRS            (empty) Cluster seeds or sentinels, comma-separated; not with _ADDR
  CHURNWATCH_REDIS_CLUSTER          false   true: Redis Cluster
  CHURNWATCH_REDIS_MASTER_NAME      (empty) Sentinel master name
  CHURNWATCH_REDIS_USERNAME         (empty) Redis ACL user
  CHURNWATCH_REDIS_PASSWORD_FILE    (empty) file holding the Redis password
  CHURNWATCH_REDIS_TLS_CA           (empty) CA of Redis's certificate: TLS to Redis
  CHURNWATCH_AUTH_PUBLIC_KEYS       (required) PEM files or PEM text, comma separated
  CHURNWATCH_LOG_LEVEL              info
  CHURNWATCH_HOME_BANK              HOME
  CHURNWATCH_TOPIC_EVENTS           churnwatch.events.v1
  CHURNWATCH_TOPIC_CUSTOMERS        churnwatch.customers.v1
  CHURNWATCH_TOPIC_SIGNALS          churnwatch.signals.v1
  CHURNWATCH_TOPIC_ALERTS           churnwatch.alerts.v1
  CHURNWATCH_TOPIC_DLQ              churnwatch.events.v1.dlq
  CHURNWATCH_SHUTDOWN_GRACE         10s
  OTEL_EXPORTER_OTLP_ENDPOINT       (empty: no trace export)
`, version)
	for _, v := range app.Vars {
		fmt.Printf("  %-33s %s\n", v[0], v[1])
	}
	fmt.Println("\nTransport security and limits (every service):")
	config.WriteSettings(os.Stdout, config.TransportSettings)
	fmt.Println("Token verification (docs/security-identity.md); a public key or a JWKS URL is required:")
	for _, s := range config.AuthSettings {
		fmt.Printf("  %-33s %s (%s)\n", s.Name, s.Help, s.Default)
	}
}
