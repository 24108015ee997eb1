// Package store owns the alert service's Redis state and is the only
// package that holds a Redis client: alerts and their history, the listing
// indexes (one index scan serves ListAlerts and the Subscribe snapshot),
// wall-clock deadlines, counters, the audience streams (the outbox every
// alert change is written to in the same transaction as the change) and the
// leases and positions of the outbox's readers.
//
// Redis layout. Every key of the alert service shares ONE hash tag,
// {alerts}, so that a whole step (customer keys, listing indexes,
// deadlines, counters and the audience streams, which appendUpdate writes
// in one script with one shared entry id) stays one MULTI/EXEC in one hash
// slot on Redis Cluster. This is the exception to "never one global tag":
// the step's atomicity spans customers and global indexes by design, and
// the alert keyspace is small (open and resolved alerts, streams capped at
// the retention). On a Cluster it therefore lives on one master; the
// rules state and the ingester's dedup marks, which are the bulk, spread
// over all of them. Spreading alerts too would need per-customer steps
// with an outbox for the global keys.
//
// Key names before issue 10 were the same without "{alerts}:" and with
// the customer tag: cw:{c:ID}:open → cw:{alerts}:c:ID:open, cw:idx:all →
// cw:{alerts}:idx:all, cw:s:all → cw:{alerts}:s:all, and so on
// (docs/deployment.md has the rename for an existing Redis).
//
//	cw:{alerts}:c:ID:open        the customer's open alert (proto); absent when none
//	cw:{alerts}:c:ID:a:ALERT     a resolved alert (proto)
//	cw:{alerts}:c:ID:h:ALERT     the alert's history (list of AlertHistoryEntry)
//	cw:{alerts}:c:ID:sigs        merged signal ids (zset, newest SignalMemory kept)
//	cw:{alerts}:c:ID:profile     the customer's profile (proto)
//	cw:{alerts}:c:ID:alerts      the customer's alerts (listing index)
//	cw:{alerts}:idx:all|m:MGR|b:BR  listing indexes: members "CREATEDMS|ALERT", score 0, read by lex
//	cw:{alerts}:idx:open         open alerts (same members), for ops' Subscribe snapshot
//	cw:{alerts}:due:ack          open alerts by acknowledgement deadline (ms)
//	cw:{alerts}:due:snooze       snoozed alerts by snooze end (ms)
//	cw:{alerts}:stats:open       open alerts per "SEVERITY|TIER"
//	cw:{alerts}:precision        resolved outcomes per "RULE|OUTCOME"
//	cw:{alerts}:s:all|m:MGR|b:BR audience streams (AlertUpdates); ids shared with cw:{alerts}:s:all,
//	                             the outbox; entry fields u (AlertUpdate), n (notify flags),
//	                             a (audiences, all-stream only), tp (traceparent), i (ingested ms)
//	cw:{alerts}:pub:last         last cw:{alerts}:s:all id published to churnwatch.alerts.v1; set
//	                             only by the commitPosition script while cw:{alerts}:pub:lease is the
//	                             setter's token
//	cw:{alerts}:pub:lease        publisher lease: the holder's random token, PX
//	                             CHURNWATCH_PUBLISH_LEASE_TTL; only the holder publishes
//	cw:{alerts}:rcv:NAME:pos     last all-stream id handled by receiver NAME (CAS on its lease)
//	cw:{alerts}:rcv:NAME:lease   the receiver's deliverer lease (token, PX)
//	cw:{alerts}:rcv:NAME:head    the change being retried: id, first attempt ms, attempts
//	cw:{alerts}:rcv:NAME:dead    dead letters (stream, capped at DeadLetterCap)
package store

import (
	"fmt"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/alerting"
)

const keyPrefix = "cw:{alerts}:"

func ctag(c string) string            { return keyPrefix + "c:" + c + ":" }
func kOpen(c string) string           { return ctag(c) + "open" }
func kAlert(c, id string) string      { return ctag(c) + "a:" + id }
func kHistory(c, id string) string    { return ctag(c) + "h:" + id }
func kSigs(c string) string           { return ctag(c) + "sigs" }
func kProfile(c string) string        { return ctag(c) + "profile" }
func kCustomerAlerts(c string) string { return ctag(c) + "alerts" }
func kIndex(aud string) string        { return keyPrefix + "idx:" + aud }
func kStream(aud string) string       { return keyPrefix + "s:" + aud }
func kRcv(name, what string) string   { return keyPrefix + "rcv:" + name + ":" + what }

const (
	kDueAck    = keyPrefix + "due:ack"
	kDueSnooze = keyPrefix + "due:snooze"
	kOpenStats = keyPrefix + "stats:open"
	kPrecision = keyPrefix + "precision"
	kPubLast   = keyPrefix + "pub:last"
	kPubLease  = keyPrefix + "pub:lease"
	kOpenIndex = keyPrefix + "idx:open"
)

// OutboxStream is the all-audience stream, the outbox that the Kafka
// publisher, the receivers and the Subscribe fan-out read.
var OutboxStream = kStream(alerting.AudienceAll)

// DeadLetterCap bounds each receiver's dead-letter stream.
const DeadLetterCap = 10000

func indexMember(a *cwv1.Alert) string {
	return fmt.Sprintf("%013d|%s", a.GetCreatedAt().AsTime().UnixMilli(), a.GetAlertId())
}

// Index is a listing index: alerts newest first.
type Index string

// AudienceIndex lists every alert routed to an audience.
func AudienceIndex(aud string) Index { return Index(kIndex(aud)) }

// CustomerIndex lists the alerts of one customer.
func CustomerIndex(customer string) Index { return Index(kCustomerAlerts(customer)) }

// SnapshotIndex holds at least the open alerts of an audience: the open
// index for ops and admins, the audience's listing index otherwise (the
// reader keeps the open ones).
func SnapshotIndex(aud string) Index {
	if aud == alerting.AudienceAll {
		return kOpenIndex
	}
	return AudienceIndex(aud)
}

// Deadline is one of the wall-clock deadline sets.
type Deadline string

// The deadline sets: acknowledgement due (escalation) and snooze end.
const (
	AckDeadline    Deadline = kDueAck
	SnoozeDeadline Deadline = kDueSnooze
)
