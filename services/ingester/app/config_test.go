package app_test

import (
	"strings"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/ingester/app"
	"github.com/churnwatch/churnwatch/services/platform/config"
)

func TestLoadConfig(t *testing.T) {
	cfg, err := app.LoadConfig(config.FromMap(map[string]string{
		"CHURNWATCH_AUTH_PUBLIC_KEYS": "-----BEGIN PUBLIC KEY-----", "CHURNWATCH_DEDUP_RETENTION": "48h", "CHURNWATCH_RATE_LIMIT": "0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Common.GRPCAddr != "127.0.0.1:7001" || cfg.Common.HTTPAddr != ":8001" || cfg.DedupRetention != 48*time.Hour ||
		cfg.RateLimit != 0 || cfg.HTTPMaxBody != 32<<20 || cfg.DedupPendingTTL != 30*time.Second {
		t.Fatalf("%+v", cfg)
	}
	_, err = app.LoadConfig(config.FromMap(map[string]string{
		"CHURNWATCH_AUTH_PUBLIC_KEYS": "k", "CHURNWATCH_DEDUP_PENDING_TTL": "5s", "CHURNWATCH_RATE_BURST": "100", "CHURNWATCH_KAFKA_WRITE_ATTEMPTS": "x",
	}))
	for _, want := range []string{"CHURNWATCH_DEDUP_PENDING_TTL 5s", "CHURNWATCH_RATE_BURST 100", "CHURNWATCH_KAFKA_WRITE_ATTEMPTS"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestEarliestEvent(t *testing.T) {
	base := map[string]string{"CHURNWATCH_AUTH_PUBLIC_KEYS": "k"}
	cfg, err := app.LoadConfig(config.FromMap(base))
	if err != nil || !cfg.EarliestEvent.Equal(time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("default: %v %v", cfg.EarliestEvent, err)
	}
	for v, want := range map[string]time.Time{
		"2000-01-01":           time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		"2001-02-03T04:05:06Z": time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC),
	} {
		base["CHURNWATCH_EARLIEST_EVENT"] = v
		if cfg, err := app.LoadConfig(config.FromMap(base)); err != nil || !cfg.EarliestEvent.Equal(want) {
			t.Errorf("%s: %v %v", v, cfg.EarliestEvent, err)
		}
	}
	base["CHURNWATCH_EARLIEST_EVENT"] = "1.1.1970"
	if _, err := app.LoadConfig(config.FromMap(base)); err == nil || !strings.Contains(err.Error(), "CHURNWATCH_EARLIEST_EVENT") {
		t.Fatalf("bad value: %v", err)
	}
}
