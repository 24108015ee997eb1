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

// GetAlert returns an alert by id with its history, or nil when unknown.
func (s *Store) GetAlert(ctx context.Context, id string, history bool) (*cwv1.Alert, error) {
	c, ok := alerting.CustomerOf(id)
	if !ok {
		return nil, nil
	}
	alerts, err := s.GetAlerts(ctx, []string{id})
	if err != nil || alerts[0] == nil || !history {
		return alerts[0], err
	}
	raw, err := s.rdb.LRange(ctx, kHistory(c, id), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	a := alerts[0]
	for _, r := range raw {
		h := &cwv1.AlertHistoryEntry{}
		if err := proto.Unmarshal([]byte(r), h); err != nil {
			return nil, fmt.Errorf("decode history: %w", err)
		}
		a.History = append(a.History, h)
	}
	return a, nil
}

// GetAlerts loads alerts by id in one round trip; unknown ids give nil.
func (s *Store) GetAlerts(ctx context.Context, ids []string) ([]*cwv1.Alert, error) {
	type pair struct{ open, closed *redis.StringCmd }
	cmds := make([]pair, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			if c, ok := alerting.CustomerOf(id); ok {
				cmds[i] = pair{p.Get(ctx, kOpen(c)), p.Get(ctx, kAlert(c, id))}
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load alerts: %w", err)
	}
	out := make([]*cwv1.Alert, len(ids))
	for i, id := range ids {
		if cmds[i].open == nil {
			continue
		}
		for _, cmd := range []*redis.StringCmd{cmds[i].open, cmds[i].closed} {
			b, err := cmd.Bytes()
			if err != nil {
				continue
			}
			a := &cwv1.Alert{}
			if err := proto.Unmarshal(b, a); err != nil {
				return nil, fmt.Errorf("decode alert: %w", err)
			}
			if a.GetAlertId() == id {
				out[i] = a
				break
			}
		}
	}
	return out, nil
}

// ScanIndex walks a listing index newest first, from after the member
// after ("" = the newest), page members per round trip, loading each page's
// alerts in one more, and calls fn for every alert that exists until fn
// returns false or limit members (0 = no limit, else a multiple of page)
// were read. last is the last member read (a page token); more reports
// whether the walk stopped with members possibly left (fn stopped it
// before the page's end or on a full page, or the limit was reached).
// ListAlerts and the Subscribe snapshot both read alerts through it.
func (s *Store) ScanIndex(ctx context.Context, idx Index, after string, page, limit int,
	fn func(*cwv1.Alert) (bool, error)) (last string, more bool, err error) {
	start := "+"
	if after != "" {
		start = "(" + after
	}
	scanned := 0
	for limit == 0 || scanned < limit {
		members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: string(idx), Start: start, Stop: "-", ByLex: true, Rev: true, Count: int64(page)}).Result()
		if err != nil {
			return last, false, fmt.Errorf("read index: %w", err)
		}
		if len(members) == 0 {
			return last, false, nil
		}
		ids := make([]string, len(members))
		for i, m := range members {
			_, ids[i], _ = strings.Cut(m, "|")
		}
		alerts, err := s.GetAlerts(ctx, ids)
		if err != nil {
			return last, false, err
		}
		for i, a := range alerts {
			scanned++
			last = members[i]
			if a == nil {
				continue
			}
			goOn, err := fn(a)
			if err != nil {
				return last, false, err
			}
			if !goOn {
				return last, i < len(alerts)-1 || len(members) == page, nil
			}
		}
		if len(members) < page {
			return last, false, nil
		}
		start = "(" + last
	}
	return last, true, nil
}

// PrecisionCounts are the resolved outcomes per "RULE|OUTCOME" field.
func (s *Store) PrecisionCounts(ctx context.Context) (map[string]string, error) {
	return s.rdb.HGetAll(ctx, kPrecision).Result()
}

// OpenCounts are the open alerts per "SEVERITY|TIER" field, counted in the
// same transaction as each change.
func (s *Store) OpenCounts(ctx context.Context) (map[string]int64, error) {
	raw, err := s.rdb.HGetAll(ctx, kOpenStats).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(raw))
	for f, v := range raw {
		n, _ := strconv.ParseInt(v, 10, 64)
		out[f] = n
	}
	return out, nil
}

// DueBy returns up to count alert ids of a deadline set due at t or before.
func (s *Store) DueBy(ctx context.Context, d Deadline, t time.Time, count int) ([]string, error) {
	return s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: string(d), Start: "-inf", Stop: strconv.FormatInt(t.UnixMilli(), 10), ByScore: true, Count: int64(count)}).Result()
}

// DropDue removes a deadline entry that names no alert.
func (s *Store) DropDue(ctx context.Context, d Deadline, id string) error {
	return s.rdb.ZRem(ctx, string(d), id).Err()
}

// Profile is the customer's latest profile, nil when none was received.
func (s *Store) Profile(ctx context.Context, customer string) (*cwv1.CustomerProfile, error) {
	b, err := s.rdb.Get(ctx, kProfile(customer)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p := &cwv1.CustomerProfile{}
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("decode profile: %w", err)
	}
	return p, nil
}
