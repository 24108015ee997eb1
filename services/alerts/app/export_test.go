package app

// WithPublishHook calls hook at the publisher's stages ("written": after a
// Kafka write, before the position update); an error from ErrKilled stops
// the publisher as kill -9 would (no position update, no renewal, no
// release).
func WithPublishHook(hook func(stage string) error) Option {
	return func(o *options) { o.publishHook = hook }
}

// ErrKilled is what a publish hook returns to kill the publisher.
var ErrKilled = errKilled

// PublisherLeader reports whether the instance holds the publisher lease.
func (a *App) PublisherLeader() bool { return a.pub.leader.Load() }
