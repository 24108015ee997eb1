// Command ingester takes account events and customer profiles from core
// banking (gRPC IngestService, HTTP POST /v1/events and /v1/customers),
// validates them and publishes them to Kafka exactly once.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/churnwatch/churnwatch/services/ingester/app"
	"github.com/churnwatch/churnwatch/services/platform/client"
	"github.com/churnwatch/churnwatch/services/platform/config"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "healthcheck":
			return healthcheck(ctx, stderr)
		case "-h", "--help", "help":
			usage(stdout)
			return 0
		case "version", "--version":
			fmt.Fprintln(stdout, version)
			return 0
		default:
			fmt.Fprintf(stderr, "ingester: unknown argument %q (try --help)\n", args[0])
			return 2
		}
	}
	cfg, err := app.LoadConfig(config.FromOS())
	if err != nil {
		fmt.Fprintf(stderr, "ingester: %v\n", err)
		return 1
	}
	a, err := app.New(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ingester: %v\n", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "ingester: %v\n", err)
		return 1
	}
	return 0
}

// healthcheck asks the local gRPC health service (the container
// HEALTHCHECK; distroless images have no shell or curl).
func healthcheck(ctx context.Context, stderr io.Writer) int {
	if err := client.Healthcheck(ctx, os.Getenv, "127.0.0.1:7001"); err != nil {
		fmt.Fprintf(stderr, "ingester unhealthy: %v\n", err)
		return 1
	}
	return 0
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
