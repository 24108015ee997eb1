package e2e

import (
	"context"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/testkit"

	"github.com/churnwatch/churnwatch/services/churnctl/cli"

	"google.golang.org/grpc"
)

type clientConn = grpc.ClientConn

// syncBuffer collects the services' logs from several goroutines.
type syncBuffer = testkit.SyncBuffer

// retrying runs an ingest call the way churnctl does (cli.Retrying): a
// freshly created real-Kafka topic can time out its first acks=all write on a
// loaded machine, and the ingester then answers Unavailable ("outcome
// unknown: retry, it is safe"). Lasting errors still fail at once.
func retrying(ctx context.Context, op func(context.Context) error) error {
	return cli.Retrying(ctx, 45*time.Second, op)
}
