package intake

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// clockScript judges a partition's events, in the order they will be
// written, against the ingester's clock of that partition (the latest
// event time it has accepted there, markers included) and moves the clock
// forward. KEYS[1] is the clock; ARGV[1] the allowed lateness (ms); ARGV[2…]
// the events' times (unix ms). Per event it returns the clock after it
// (the event was in time: the stamp it carries) or -1 (late: older than
// the clock minus the lateness). An absent clock accepts anything.
var clockScript = redis.NewScript(`
local c = redis.call('GET', KEYS[1])
if c then c = tonumber(c) end
local late = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local t = tonumber(ARGV[i])
  if c and t < c - late then
    out[#out + 1] = -1
  else
    if not c or t > c then c = t end
    out[#out + 1] = c
  end
end
if c then redis.call('SET', KEYS[1], string.format('%d', c)) end
return out`)

// clockKey is the ingester's clock of one events partition. The hash tag
// is the topic and partition, so that a Redis Cluster spreads partitions.
//
//	ingest:clock:{TOPIC:N}   string  unix ms of the latest event time accepted on partition N (markers included); only moves forward
func clockKey(topic string, partition int) string {
	return "ingest:clock:{" + topic + ":" + strconv.Itoa(partition) + "}"
}

// clocks judges events partition by partition (one pipeline of one script
// per partition). times maps a partition to its events' times in write
// order; the result maps it to what clockScript returned for each.
func (d *dedup) clocks(ctx context.Context, topic string, lateMs int64, times map[int][]int64) (map[int][]int64, error) {
	if len(times) == 0 {
		return nil, nil
	}
	run := func() (map[int]*redis.Cmd, error) {
		pipe := d.rdb.Pipeline()
		cmds := make(map[int]*redis.Cmd, len(times))
		for p, ts := range times {
			args := make([]any, 0, len(ts)+1)
			args = append(args, lateMs)
			for _, t := range ts {
				args = append(args, t)
			}
			cmds[p] = clockScript.EvalSha(ctx, pipe, []string{clockKey(topic, p)}, args...)
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if lerr := clockScript.Load(ctx, d.rdb).Err(); lerr != nil {
			return nil, fmt.Errorf("load clock script: %w", lerr)
		}
		cmds, err = run()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("partition clocks: %w", err)
	}
	out := make(map[int][]int64, len(cmds))
	for p, c := range cmds {
		vs, err := c.Int64Slice()
		if err != nil || len(vs) != len(times[p]) {
			return nil, fmt.Errorf("partition clocks: partition %d: unexpected reply (%v)", p, err)
		}
		out[p] = vs
	}
	return out, nil
}
