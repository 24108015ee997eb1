package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoadCommonDefaultsAndErrors(t *testing.T) {
	e := FromMap(map[string]string{"CHURNWATCH_REDIS_DB": "x", "CHURNWATCH_SHUTDOWN_GRACE": "5s", "CHURNWATCH_KAFKA_BROKERS": "a:1, b:2"})
	c := LoadCommon(e, "rules", "127.0.0.1:7002", ":8002")
	if c.GRPCAddr != "127.0.0.1:7002" || c.Topics.Events != "churnwatch.events.v1" || c.HomeBank != "HOME" {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if c.ShutdownGrace != 5*time.Second || len(c.KafkaBrokers) != 2 || c.KafkaBrokers[1] != "b:2" {
		t.Fatalf("values not parsed: %+v", c)
	}
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "CHURNWATCH_REDIS_DB") {
		t.Fatalf("want parse error naming the key, got %v", err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "CHURNWATCH_AUTH_PUBLIC_KEYS") {
		t.Fatalf("want missing keys error, got %v", err)
	}
	c.AuthPublicKeys = []string{"k.pem"}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
}

func TestAttrsMasksSecrets(t *testing.T) {
	attrs := Attrs(map[string]any{"redis_password": "hunter2", "token": "abc", "addr": "x"})
	for _, a := range attrs {
		if s := a.(interface{ String() string }).String(); strings.Contains(s, "hunter2") || strings.Contains(s, "abc") {
			t.Fatalf("secret leaked: %s", s)
		}
	}
}
