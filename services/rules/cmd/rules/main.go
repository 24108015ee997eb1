// Command rules is the churnwatch rules service: it scores every customer
// on account events (event time) and publishes explained risk signals.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/service"
	"github.com/churnwatch/churnwatch/services/rules/app"
)

// version is set at build time (-ldflags -X main.version=…).
var version = "dev"

func main() {
	service.Command{Name: "rules", Version: version, Usage: usage, Healthcheck: healthcheck, Run: run}.Main()
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

// healthcheck probes the local service's gRPC health check.
func healthcheck(ctx context.Context) error {
	return client.Healthcheck(ctx, os.Getenv, "127.0.0.1:7002")
}

func usage(w io.Writer) {
	fmt.Fprint(w, `rules — the churnwatch rules service

Consumes account events (churnwatch.events.v1) and customer profiles
(churnwatch.customers.v1), scores every customer on event time with the
churn rules (dormancy, activity drop, large outflows, drain, stopped salary,
closures, complaints, win-back), keeps per-customer state in Redis and
publishes explained risk signals on churnwatch.signals.v1. Serves
RulesAdminService (live thresholds, customer risk) and StatusService.

Usage: rules               run the service
       rules healthcheck   exit 0 when the local gRPC health check is SERVING

Environment (default):
  CHURNWATCH_GRPC_ADDR              127.0.0.1:7002
  CHURNWATCH_HTTP_ADDR              :8002   (/healthz /readyz /metrics; the gRPC API in Connect / gRPC-Web)
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
  CHURNWATCH_AUTH_PUBLIC_KEYS       (required) PEM files or PEM text of token signers, comma-separated
  CHURNWATCH_LOG_LEVEL              info
  CHURNWATCH_HOME_BANK              HOME
  CHURNWATCH_TOPIC_EVENTS           churnwatch.events.v1
  CHURNWATCH_TOPIC_CUSTOMERS        churnwatch.customers.v1
  CHURNWATCH_TOPIC_SIGNALS          churnwatch.signals.v1
  CHURNWATCH_TOPIC_ALERTS           churnwatch.alerts.v1
  CHURNWATCH_TOPIC_DLQ              churnwatch.events.v1.dlq
  CHURNWATCH_SHUTDOWN_GRACE         10s
  OTEL_EXPORTER_OTLP_ENDPOINT       (empty) OTLP/gRPC trace export
`)
	for _, kv := range app.Env {
		fmt.Fprintf(w, "  %-33s %s\n", kv[0], kv[1])
	}
	fmt.Fprintln(w, "\nTransport security and limits (every service):")
	config.WriteSettings(w, config.TransportSettings)
	fmt.Fprintln(w, "Token verification (docs/security-identity.md); a public key or a JWKS URL is required:")
	for _, s := range config.AuthSettings {
		fmt.Fprintf(w, "  %-33s %s (%s)\n", s.Name, s.Help, s.Default)
	}
}
