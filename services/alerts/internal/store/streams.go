package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
)

// appendUpdate appends one update to the all-stream and to each audience
// stream with the same entry id, so that one cursor id is valid for every
// stream and the live fan-out (which tails the all-stream) hands out the
// ids a subscriber replays by. KEYS: all-stream, audience streams.
// ARGV: maxlen, payload, notify flags ("1"/"0" per key), audiences (csv of
// KEYS[2..]), traceparent, ingested-at ms.
const appendUpdate = `
local n = tonumber(ARGV[1])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', n, '*', 'u', ARGV[2], 'n', ARGV[3], 'a', ARGV[4], 'tp', ARGV[5], 'i', ARGV[6])
for k = 2, #KEYS do
  redis.call('XADD', KEYS[k], 'MAXLEN', '~', n, id, 'u', ARGV[2], 'n', string.sub(ARGV[3], k, k), 'tp', ARGV[5], 'i', ARGV[6])
end
return id
`

// Entry is one audience-stream entry.
type Entry struct {
	ID          string
	Update      []byte // AlertUpdate without cursor
	Notify      bool   // for the stream's audience (the all-stream: ops and admins)
	Traceparent string
	IngestedMs  int64 // 0 unless the change is CREATED/SEVERITY_RAISED from a signal

	flags, audiences string // all-stream only: notify per audience, audiences after "all"
}

func field(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func parseEntry(x redis.XMessage) Entry {
	n := field(x.Values, "n")
	ing, _ := strconv.ParseInt(field(x.Values, "i"), 10, 64)
	return Entry{ID: x.ID, Update: []byte(field(x.Values, "u")), Notify: strings.HasPrefix(n, "1"), Traceparent: field(x.Values, "tp"),
		IngestedMs: ing, flags: n, audiences: field(x.Values, "a")}
}

// For reports whether an all-stream entry goes to aud and whether aud's
// readers are notified of it.
func (e Entry) For(aud string) (notify, ok bool) {
	idx := 0
	if aud != alerting.AudienceAll {
		idx = -1
		for i, a := range strings.Split(e.audiences, ",") {
			if a == aud {
				idx = i + 1
			}
		}
		if idx < 0 {
			return false, false
		}
	}
	return idx < len(e.flags) && e.flags[idx] == '1', true
}

// Decode is the entry's AlertUpdate.
func (e Entry) Decode() (*cwv1.AlertUpdate, error) {
	u := &cwv1.AlertUpdate{}
	if err := proto.Unmarshal(e.Update, u); err != nil {
		return nil, err
	}
	return u, nil
}

// streamID is a parsed Redis stream entry id, for ordering.
type streamID struct{ ms, seq uint64 }

func parseID(s string) (streamID, bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return streamID{ms, seq}, err1 == nil && err2 == nil
}

func (x streamID) less(y streamID) bool { return x.ms < y.ms || (x.ms == y.ms && x.seq < y.seq) }

// IDLess orders stream entry ids.
func IDLess(a, b string) bool {
	x, _ := parseID(a)
	y, _ := parseID(b)
	return x.less(y)
}

// ValidID reports whether s is a stream entry id.
func ValidID(s string) bool {
	_, ok := parseID(s)
	return ok
}

// IDTime is when an entry was appended (its id's milliseconds).
func IDTime(id string) (time.Time, bool) {
	x, ok := parseID(id)
	return time.UnixMilli(int64(x.ms)), ok
}

// OutboxEnd is the id of the outbox's newest entry, "0-0" when empty.
func (s *Store) OutboxEnd(ctx context.Context) (string, error) {
	last, err := s.rdb.XRevRangeN(ctx, OutboxStream, "+", "-", 1).Result()
	if err != nil {
		return "", err
	}
	if len(last) == 0 {
		return "0-0", nil
	}
	return last[0].ID, nil
}

// ReadOutbox waits up to block for outbox entries after after and returns
// at most count of them; none when the wait ends first.
func (s *Store) ReadOutbox(ctx context.Context, after string, count int, block time.Duration) ([]Entry, error) {
	res, err := s.blocking.XRead(ctx, &redis.XReadArgs{Streams: []string{OutboxStream, after}, Count: int64(count), Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, st := range res {
		for _, x := range st.Messages {
			out = append(out, parseEntry(x))
		}
	}
	return out, nil
}

// Replay calls fn for the entries of aud's stream after from up to and
// including upto, in order. trimmed reports that the stream no longer
// holds the entry from names (it was capped past it while later ones
// remain), so the caller may have missed entries.
func (s *Store) Replay(ctx context.Context, aud, from, upto string, fn func(Entry) error) (trimmed bool, err error) {
	first, err := s.rdb.XRangeN(ctx, kStream(aud), "-", "+", 1).Result()
	if err != nil {
		return false, fmt.Errorf("replay: %w", err)
	}
	if len(first) > 0 && IDLess(from, first[0].ID) && from != "0-0" {
		trimmed = true
	}
	if !IDLess(from, upto) {
		return trimmed, nil
	}
	start := "(" + from
	for {
		msgs, err := s.rdb.XRangeN(ctx, kStream(aud), start, upto, 256).Result()
		if err != nil {
			return trimmed, fmt.Errorf("replay: %w", err)
		}
		for _, x := range msgs {
			if err := fn(parseEntry(x)); err != nil {
				return trimmed, err
			}
		}
		if len(msgs) < 256 {
			return trimmed, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}
