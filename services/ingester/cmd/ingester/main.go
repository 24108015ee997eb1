// Command ingester takes account events and customer profiles from core
// banking (gRPC IngestService, HTTP POST /v1/events and /v1/customers),
// validates them and publishes them to Kafka exactly once.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/churnwatch/churnwatch/services/ingester/app"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/service"
)

var version = "dev"

func main() {
	service.Command{Name: "ingester", Version: version, Usage: usage, Healthcheck: healthcheck, Run: run}.Main()
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
	return client.Healthcheck(ctx, os.Getenv, "127.0.0.1:7001")
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `ingester %s — churnwatch intake of account events and customer profiles

Takes events and customer profiles from core banking by gRPC (IngestService:
PublishEvents, StreamEvents, UpsertCustomers, CloseBusinessDay) and HTTP
(POST /v1/events, POST /v1/customers: NDJSON or a JSON array), validates
them (SPEC §2), and publishes each event exactly once to Kafka
(churnwatch.events.v1, key customerId; dedup by eventId in Redis).

Usage:
  ingester               run the service
  ingester healthcheck   exit 0 when the local service is SERVING (container HEALTHCHECK)
  ingester --help        this text

Environment (default):
  CHURNWATCH_GRPC_ADDR             gRPC listen address (127.0.0.1:7001; 0.0.0.0:7001 in a container)
  CHURNWATCH_HTTP_ADDR             HTTP listen address: intake, /healthz, /readyz, /metrics, the gRPC API in Connect / gRPC-Web (:8001)
  CHURNWATCH_KAFKA_BROKERS         comma-separated brokers (127.0.0.1:9092)
  CHURNWATCH_REDIS_ADDR            Redis for eventId dedup: host:port or redis(s):// URL (127.0.0.1:6379)
  CHURNWATCH_REDIS_PASSWORD        Redis password (none)
  CHURNWATCH_REDIS_DB              Redis database (0)
  CHURNWATCH_REDIS_ADDRS           Cluster seeds or sentinels, comma-separated (none; not with _ADDR)
  CHURNWATCH_REDIS_CLUSTER         true: Redis Cluster (false)
  CHURNWATCH_REDIS_MASTER_NAME     Sentinel master name (none)
  CHURNWATCH_REDIS_USERNAME        Redis ACL user (none)
  CHURNWATCH_REDIS_PASSWORD_FILE   file holding the Redis password (none)
  CHURNWATCH_REDIS_TLS_CA          CA of Redis's certificate: TLS to Redis (off)
  CHURNWATCH_AUTH_PUBLIC_KEYS      PEM files or PEM text of the token signers (required)
  CHURNWATCH_TLS_CA                CA the healthcheck trusts when TLS is on (none)
  CHURNWATCH_LOG_LEVEL             debug, info, warn or error (info)
  CHURNWATCH_HOME_BANK             the bank's own code for counterpartyBank (HOME)
  CHURNWATCH_TOPIC_EVENTS          (churnwatch.events.v1)
  CHURNWATCH_TOPIC_CUSTOMERS       (churnwatch.customers.v1)
  CHURNWATCH_TOPIC_SIGNALS         (churnwatch.signals.v1)
  CHURNWATCH_TOPIC_ALERTS          (churnwatch.alerts.v1)
  CHURNWATCH_TOPIC_DLQ             (churnwatch.events.v1.dlq)
  CHURNWATCH_SHUTDOWN_GRACE        bound of each shutdown step (10s)
  OTEL_EXPORTER_OTLP_ENDPOINT      OTLP/gRPC trace endpoint (none: traces not exported)
`, version)
	for _, s := range app.Settings {
		fmt.Fprintf(w, "  %-32s %s (%s)\n", s.Name, s.Help, s.Default)
	}
	fmt.Fprintln(w, "\nTransport security and limits (every service):")
	config.WriteSettings(w, config.TransportSettings)
	fmt.Fprintln(w, "Token verification (docs/security-identity.md); a public key or a JWKS URL is required:")
	for _, s := range config.AuthSettings {
		fmt.Fprintf(w, "  %-32s %s (%s)\n", s.Name, s.Help, s.Default)
	}
}

// healthcheck asks the local gRPC health service (the container
// HEALTHCHECK; distroless images have no shell or curl).
