package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/app"
	"github.com/churnwatch/churnwatch/services/platform/auth"
)

// rawClient dials without BDP window growth (fixed 64 KiB windows), so that
// a client that does not read fills them quickly, as a stalled browser or
// a hung consumer would.
func (e *env) rawClient(tok string) (cwv1.AlertServiceClient, context.Context) {
	e.t.Helper()
	conn, err := grpc.NewClient(e.app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	return cwv1.NewAlertServiceClient(conn), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// TestStalledSubscriberReleased: a subscriber that never reads has its
// stream, goroutines and queue released within the send timeout, although
// its queue never fills (the hub's cut-off does not apply).
func TestStalledSubscriberReleased(t *testing.T) {
	e := start(t, func(c *app.Config) { c.StreamSendTimeout = 500 * time.Millisecond; c.SubscriberQueue = 4096 })
	cl, ctx := e.rawClient(e.keys.Token(t, "ops-1", auth.RoleOps, ""))
	if _, err := cl.Subscribe(ctx, &cwv1.SubscribeRequest{}); err != nil { // never read
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "stream open", func() bool { return e.app.OpenStreams() == 1 && e.app.HubSubscribers() == 1 })
	// 2 MiB of updates: far beyond the client's windows and the server's
	// write quota, far below the queue's 4096 entries.
	note := strings.Repeat("x", 32<<10)
	for i := range 64 {
		u := &cwv1.AlertUpdate{Change: cwv1.AlertChange_ALERT_CHANGE_CREATED, Alert: &cwv1.Alert{AlertId: "a-" + string(rune('A'+i%26)), Note: note}}
		if err := e.app.AppendAll(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "stalled stream released", func() bool { return e.app.OpenStreams() == 0 && e.app.HubSubscribers() == 0 })
}

// TestStreamsPerPrincipalCapped: the 9th stream of one principal is
// refused with RESOURCE_EXHAUSTED; another principal is not affected; a
// closed stream frees its slot.
func TestStreamsPerPrincipalCapped(t *testing.T) {
	e := start(t, nil)
	if e.cfg.StreamMaxPerPrincipal != 8 {
		t.Fatalf("default cap %d, want 8", e.cfg.StreamMaxPerPrincipal)
	}
	cl, base := e.rawClient(e.keys.Token(t, "rm-001", auth.RoleManager, ""))
	var cancels []context.CancelFunc
	for range 8 {
		ctx, cancel := context.WithCancel(base)
		cancels = append(cancels, cancel)
		if _, err := cl.Subscribe(ctx, &cwv1.SubscribeRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "8 streams open", func() bool { return e.app.OpenStreams() == 8 })
	st, err := cl.Subscribe(base, &cwv1.SubscribeRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "at most 8") {
		t.Fatalf("9th stream: %v, want ResourceExhausted", err)
	}
	other, octx := e.rawClient(e.keys.Token(t, "rm-002", auth.RoleManager, ""))
	if _, err := other.Subscribe(octx, &cwv1.SubscribeRequest{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "other principal's stream open", func() bool { return e.app.OpenStreams() == 9 })
	cancels[0]()
	waitFor(t, 10*time.Second, "closed stream released", func() bool { return e.app.OpenStreams() == 8 })
	ctx, cancel := context.WithTimeout(base, 2*time.Second)
	defer cancel()
	st, err = cl.Subscribe(ctx, &cwv1.SubscribeRequest{})
	if err == nil {
		_, err = st.Recv() // no alerts: waits live until the deadline
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("stream after one closed: %v, want it open until the deadline", err)
	}
	for _, c := range cancels {
		c()
	}
}

// TestStreamEndsAtTokenExpiry: a stream lives no longer than its token.
func TestStreamEndsAtTokenExpiry(t *testing.T) {
	e := start(t, nil)
	cl, ctx := e.rawClient(e.keys.TokenTTL(t, "ops-1", auth.RoleOps, "", 2*time.Second))
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err := cl.Subscribe(ctx, &cwv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("at token expiry: %v, want Unauthenticated", err)
	}
	waitFor(t, 5*time.Second, "stream released", func() bool { return e.app.OpenStreams() == 0 })
}
