// Package telemetry sets up OpenTelemetry for one service instance: metrics
// exported in Prometheus text format on /metrics (always) and traces sent by
// OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set. Providers are per instance,
// not global, so that several services can share one process (churnwatch dev).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry holds one service's providers.
type Telemetry struct {
	Meter          metric.Meter
	Tracer         trace.Tracer
	MeterProvider  *sdkmetric.MeterProvider
	TracerProvider *sdktrace.TracerProvider
	Propagator     propagation.TextMapPropagator
	registry       *prometheus.Registry
}

// Setup builds the providers. otlpEndpoint may be empty (no trace export;
// spans are still created so that trace ids reach logs and Kafka headers).
func Setup(ctx context.Context, service, otlpEndpoint string) (*Telemetry, error) {
	res := resource.NewSchemaless(attribute.String("service.name", service))
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if otlpEndpoint != "" {
		te, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		topts = append(topts, sdktrace.WithBatcher(te))
	}
	tp := sdktrace.NewTracerProvider(topts...)
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	otel.SetTextMapPropagator(prop)
	return &Telemetry{
		Meter:          mp.Meter("churnwatch/" + service),
		Tracer:         tp.Tracer("churnwatch/" + service),
		MeterProvider:  mp,
		TracerProvider: tp,
		Propagator:     prop,
		registry:       reg,
	}, nil
}

// MetricsHandler serves this instance's metrics in Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.TracerProvider.Shutdown(ctx), t.MeterProvider.Shutdown(ctx))
}
