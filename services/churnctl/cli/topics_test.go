package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/churnwatch/churnwatch/services/platform/embedded"
	"github.com/churnwatch/churnwatch/services/platform/testkit"
)

func runTopics(t *testing.T, brokers []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	vars := map[string]string{"CHURNWATCH_KAFKA_BROKERS": strings.Join(brokers, ",")}
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return vars[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := Main(ctx, env, append([]string{"topics", "create"}, args...))
	return code, out.String(), errb.String()
}

// On a real 3-node Apache Kafka, topics create makes every churnwatch topic
// with replication 3 and min.insync.replicas 2, customers compacted, as
// the brokers themselves report; a second run changes nothing.
func TestTopicsCreateOnThreeBrokers(t *testing.T) {
	k := testkit.RealKafka(t, 3)
	names := testkit.DefaultTopics().All()

	code, out, errOut := runTopics(t, k.Brokers, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res TopicsCreateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res.Topics) != len(names) {
		t.Fatalf("reported %d topics, want %d: %s", len(res.Topics), len(names), out)
	}
	for _, r := range res.Topics {
		if !r.Created || r.Replication != 3 || r.MinInsync != 2 || r.Partitions != DefaultPartitions {
			t.Fatalf("first run reported %+v, want created, replication 3, min.insync 2, %d partitions", r, DefaultPartitions)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(k.Brokers...)}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 3 {
		t.Fatalf("metadata lists %d brokers, want 3", len(md.Brokers))
	}
	for _, tp := range md.Topics {
		if tp.Error != nil || len(tp.Partitions) != DefaultPartitions {
			t.Fatalf("topic %s: %v, %d partitions", tp.Name, tp.Error, len(tp.Partitions))
		}
		for _, p := range tp.Partitions {
			if len(p.Replicas) != 3 {
				t.Fatalf("%s/%d has %d replicas, want 3", tp.Name, p.ID, len(p.Replicas))
			}
		}
	}
	var req kafka.DescribeConfigsRequest
	for _, n := range names {
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: n,
			ConfigNames: []string{"cleanup.policy", "min.insync.replicas"}})
	}
	// The broker asked may not know a just-created topic yet: it answers
	// with no entries for it. Ask again until every topic has both.
	var dc *kafka.DescribeConfigsResponse
	deadline := time.Now().Add(20 * time.Second)
	for {
		dc, err = cl.DescribeConfigs(ctx, &req)
		complete := err == nil && len(dc.Resources) == len(names)
		if err == nil {
			for _, r := range dc.Resources {
				if len(r.ConfigEntries) < 2 {
					complete = false
				}
			}
		}
		if complete || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	customers := testkit.DefaultTopics().Customers
	for _, r := range dc.Resources {
		cfg := map[string]string{}
		for _, e := range r.ConfigEntries {
			cfg[e.ConfigName] = e.ConfigValue
		}
		wantPolicy := "delete"
		if r.ResourceName == customers {
			wantPolicy = "compact"
		}
		if cfg["min.insync.replicas"] != "2" || cfg["cleanup.policy"] != wantPolicy {
			t.Fatalf("%s configs %v, want min.insync.replicas 2, cleanup.policy %s", r.ResourceName, cfg, wantPolicy)
		}
	}

	// Idempotent: everything is reported as existing, with what it has.
	code, out, errOut = runTopics(t, k.Brokers)
	if code != 0 {
		t.Fatalf("second run exit %d: %s", code, errOut)
	}
	if strings.Contains(out, "created") || strings.Count(out, "existed") != len(names) {
		t.Fatalf("second run should find every topic existing:\n%s", out)
	}
	if !strings.Contains(out, customers) || !strings.Contains(out, "true") {
		t.Fatalf("table misses the compacted customers topic:\n%s", out)
	}

	code, _, errOut = runTopics(t, k.Brokers, "--replication", "4")
	if code != ExitFailure || !strings.Contains(errOut, "replication 4 needs 4 brokers; the cluster has 3: pass --replication 3") {
		t.Fatalf("--replication 4 on 3 brokers: exit %d, %q", code, errOut)
	}
}

// On one broker the default is replication 1, and asking for more says
// what to pass instead.
func TestTopicsCreateOnOneBroker(t *testing.T) {
	k, err := embedded.StartKafka(0, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	code, _, errOut := runTopics(t, k.Brokers, "--replication", "3")
	if code != ExitFailure || !strings.Contains(errOut, "replication 3 needs 3 brokers; the cluster has 1: pass --replication 1") {
		t.Fatalf("exit %d, %q", code, errOut)
	}
	code, out, errOut := runTopics(t, k.Brokers, "--json", "--partitions", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res TopicsCreateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Topics {
		if !r.Created || r.Replication != 1 || r.MinInsync != 1 || r.Partitions != 2 {
			t.Fatalf("%+v, want created with replication 1, min.insync 1, 2 partitions", r)
		}
	}
	if code, _, errOut := runTopics(t, nil); code != ExitUsage || !strings.Contains(errOut, "CHURNWATCH_KAFKA_BROKERS") {
		t.Fatalf("no brokers: exit %d, %q", code, errOut)
	}
}
