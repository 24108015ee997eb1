package e2e

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/churnwatch/churnwatch/services/churnctl/demo"
	"github.com/churnwatch/churnwatch/services/churnctl/devstack"
)

type clientConn = grpc.ClientConn

func waitLag(ctx context.Context, st *devstack.Stack) error {
	dl, _ := ctx.Deadline()
	return demo.WaitCaughtUp(ctx, st.Brokers, timeUntil(dl))
}

func timeUntil(t time.Time) time.Duration { return time.Until(t) }
