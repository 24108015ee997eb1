package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/config"
	"github.com/churnwatch/churnwatch/services/platform/kafkax"
)

// DefaultPartitions is what `topics create` gives each topic
// (docs/deployment.md: 12–24 in production). It is the ceiling on a
// consumer group's parallelism and splits evenly over 1, 2, 3, 4, 6 or 12
// instances.
const DefaultPartitions = 12

func init() {
	Register(&Command{Name: "topics create", Args: "[--partitions 12] [--replication R] [--min-insync N] [--json]",
		Summary: "create churnwatch's Kafka topics (idempotent; replication min(3, brokers))",
		Help: `Creates the churnwatch topics (names from CHURNWATCH_TOPIC_*; customers
compacted) on the cluster in CHURNWATCH_KAFKA_BROKERS. Topics that exist are
left as they are and reported with their partitions and replication.`, Run: topicsCreate})
}

// TopicsCreateResult is what `topics create --json` prints.
type TopicsCreateResult struct {
	Brokers []string             `json:"brokers"`
	Topics  []kafkax.TopicReport `json:"topics"`
}

func topicsCreate(ctx context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "topics create")
	partitions := fs.Int("partitions", DefaultPartitions, "partitions of each new topic")
	replication := fs.Int("replication", 0, "replicas of each new topic (0: min(3, brokers in the cluster))")
	minInsync := fs.Int("min-insync", 0, "min.insync.replicas of each new topic (0: 2 when replication ≥ 3, else 1)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	pos, err := Parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return Usagef("unexpected argument %q", pos[0])
	}
	if *partitions < 1 {
		return Usagef("--partitions must be at least 1")
	}
	if *replication < 0 || *minInsync < 0 {
		return Usagef("--replication and --min-insync must not be negative")
	}
	cenv := env.Config()
	common := config.LoadCommon(cenv, "churnctl", "", "")
	if env.Getenv("CHURNWATCH_KAFKA_BROKERS") == "" {
		return Usagef("set CHURNWATCH_KAFKA_BROKERS to the cluster's bootstrap list (scripts/kafka.sh start writes it to D/kafka.env)")
	}
	if err := cenv.Err(); err != nil {
		return Usagef("%v", err)
	}
	cluster, err := kafkax.ClusterFrom(common)
	if err != nil {
		return Usagef("%v", err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	reports, err := kafkax.EnsureTopics(ctx, cluster,
		kafkax.TopicPolicy{Replication: *replication, MinInsync: *minInsync}, kafkax.Specs(common.Topics, *partitions)...)
	if err != nil {
		var nb *kafkax.NotEnoughBrokersError
		if errors.As(err, &nb) {
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%w: pass --replication %d, or add brokers", nb, nb.Brokers)}
		}
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("topics on %s: %w (is the cluster up? check CHURNWATCH_KAFKA_BROKERS)", strings.Join(common.KafkaBrokers, ","), err)}
	}
	if *asJSON {
		return env.JSON(TopicsCreateResult{Brokers: common.KafkaBrokers, Topics: reports})
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tSTATUS\tPARTITIONS\tREPLICATION\tMIN-INSYNC\tCOMPACTED\tNOTE")
	for _, r := range reports {
		st := "existed"
		if r.Created {
			st = "created"
		}
		mi := "-"
		if r.MinInsync > 0 {
			mi = fmt.Sprint(r.MinInsync)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%v\t%s\n", r.Name, st, r.Partitions, r.Replication, mi, r.Compacted, r.Note)
	}
	return tw.Flush()
}
