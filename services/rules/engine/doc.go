// Package engine owns churnwatch's scoring: the pure rules of SPEC §4 over a
// bounded per-customer State. It does no I/O, reads no clock, starts no
// goroutine and uses no randomness, so the live rules service (State in
// Redis, one blob per customer), offline back-testing and simulator tuning
// get the same signals from the same events.
//
// # Time
//
// Everything runs on event time. Apply first advances the customer to the
// event's time, firing absence rules whose deadlines passed, then applies the
// event. Advance does the same for the partition clock (a later event of
// another customer, or a business-day close). Absence signals carry their
// deadline as Time, so Advance(t1) then Advance(t2) equals Advance(t2).
// Events may arrive up to Config.Lateness (7 days) older than the customer's
// clock; they update the right day's buckets. Older ones, and repeated event
// ids within that window, are ignored (Check says which). What already fired
// stays fired: an event that arrives after the clock passed one of the
// customer's deadlines or day boundaries counts from then on but does not
// take back a signal stamped before it. Results are therefore identical for
// any interleaving of Advance calls that never runs ahead of the next event
// of the customer; a caller that wants identical results whatever the
// arrival order must hold events back until its clock has passed them.
//
// # Rules and where SPEC leaves room
//
//   - Customer-initiated activity (DEPOSIT, WITHDRAWAL, TRANSFER_IN,
//     TRANSFER_OUT, CARD_PAYMENT, SALARY) is the only thing that resets
//     dormancy. A customer with no activity yet counts dormancy from the first
//     event seen. Each dormancy rule fires once per episode, exactly N days
//     after the last activity (an event at that instant comes after it).
//   - activity.drop is evaluated at UTC day boundaries: at the boundary
//     opening day d, the last 30 days are the complete days d-30 … d-1 and the
//     baseline the 180 days before them, clipped to the customer's history
//     (from the first event seen), so avg30 = baseline × 30 / baseline days.
//     It fires with ≥ min_history_days of history, avg30 ≥ min_baseline and
//     last30 ≤ ratio × avg30, and re-arms at the first boundary with last30 >
//     ratio × avg30. An event only adds to the last 30 days, so it can never
//     start an episode; Apply evaluates the boundaries up to the event's time
//     before applying it, and the next firing boundary is part of
//     NextDeadline.
//   - outflow.large converts the tier amounts (major units) into the event's
//     currency with its ISO 4217 exponent. The share test uses balanceAfter +
//     amount, else the account's last balance before the event.
//   - outflow.drain is evaluated on each external outflow in the customer's
//     primary currency (the first money event's): outflows of the event's day
//     and the 6 before against the average end-of-day total balance of the
//     90 days before those 7, counting only days since a balance was first
//     known (at least min_history_days). Balances come only from balanceAfter
//     (a closed account without one counts as 0); totals sum each account's
//     latest balance. One signal per episode; it re-arms when an outflow finds
//     the condition false.
//   - salary.stopped: at least min_credits distinct salary days within the
//     lookback_days up to and including the last salary, then none for N
//     days; fires once per last salary.
//   - complaints: ≥ count complaints within 30 days (strictly less than 30×24h
//     apart) or one with sentiment ≤ floor; every qualifying complaint fires.
//   - closure fires on every ACCOUNT_CLOSED and PRODUCT_CANCELLED.
//   - winback fires when a CHURNED customer acts again; stage WON_BACK lasts
//     until the next dormancy.declining. Activity returns DECLINING to ACTIVE.
//
// # State
//
// State is bounded whatever the history: daily buckets (customer-initiated
// transactions for 220 days, external outflows for 17, end-of-day total
// balances for 107), the last balance of each recent day per account (at
// most 64 accounts), the newest 16 salary days and complaints, dedupe hashes
// of the event ids of the last 8 days (at most 4096) and at most one live
// signal per rule. MarshalBinary writes it as a versioned varint blob; a
// customer active every day for years stays around 1–1.5 KiB.
//
// # Score
//
// A signal is live for 30 days of event time after it fired, or longer while
// its condition holds (dormancy while still dormant, salary still missing,
// activity still low). The score combines the live signals as
// 100 × (1 − Π(1 − wᵢ/100)), one factor per rule, in integer arithmetic;
// dormancy.churned replaces dormancy.declining. Weights:
//
//	rule                weight  alone
//	dormancy.declining    45    MEDIUM
//	dormancy.churned      70    HIGH
//	activity.drop         30    LOW
//	outflow.large         45    MEDIUM
//	outflow.drain         55    MEDIUM
//	salary.stopped        40    MEDIUM
//	closure               50    MEDIUM
//	complaints            30    LOW
//	winback                0    informational
//
// For example large outflow + drain = 75 (HIGH), with a closure 88
// (CRITICAL); declining + drop = 62 (HIGH). Severity bands: LOW < 40 ≤
// MEDIUM < 60 ≤ HIGH < 80 ≤ CRITICAL.
package engine
