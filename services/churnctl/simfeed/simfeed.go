// Package simfeed turns the simulated bank (package simulate) into what the
// pipeline takes in: the ingester's wire records and the rules back-test's
// input and labels. It sits between the two so that the simulator stays
// free of the wire types and the back-test (services/rules/backtest) free
// of churnctl.
package simfeed

import (
	"strconv"
	"time"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/churnctl/simulate"
	"github.com/churnwatch/churnwatch/services/rules/backtest"
)

// FromBank turns a simulated bank into back-test input and labels, the
// records numbered as the lines of the files `churnctl simulate` writes.
func FromBank(b *simulate.Bank) (backtest.Input, []backtest.Label) {
	in := backtest.Input{
		Customers: make([]backtest.Record[*cwv1.IncomingCustomer], len(b.Customers)),
		Events:    make([]backtest.Record[*cwv1.IncomingEvent], len(b.Events)),
	}
	for i, c := range b.Customers {
		in.Customers[i] = backtest.Record[*cwv1.IncomingCustomer]{Line: i + 1, Value: IncomingCustomer(c)}
	}
	for i, e := range b.Events {
		in.Events[i] = backtest.Record[*cwv1.IncomingEvent]{Line: i + 1, Value: IncomingEvent(e)}
	}
	labels := make([]backtest.Label, len(b.Labels))
	for i, l := range b.Labels {
		labels[i] = backtest.Label{CustomerID: l.CustomerID, Archetype: l.Archetype, Churned: l.Churned}
		if l.Churned {
			labels[i].ChurnDate, _ = time.Parse(time.DateOnly, l.ChurnDate)
		}
	}
	return in, labels
}

// IncomingCustomer is a simulated customer as the ingester receives it.
func IncomingCustomer(c simulate.Customer) *cwv1.IncomingCustomer {
	return &cwv1.IncomingCustomer{CustomerId: c.CustomerID, Tier: c.Tier, ManagerId: c.ManagerID, BranchId: c.BranchID, DisplayName: c.DisplayName}
}

// IncomingEvent is a simulated event as the ingester receives it.
func IncomingEvent(e simulate.Event) *cwv1.IncomingEvent {
	ie := &cwv1.IncomingEvent{EventId: e.EventID, CustomerId: e.CustomerID, AccountId: e.AccountID, OccurredAt: e.OccurredAt,
		Type: e.Type, Amount: e.Amount, Currency: e.Currency, CounterpartyBank: e.CounterpartyBank, BalanceAfter: e.BalanceAfter, Channel: e.Channel}
	if e.Sentiment != nil {
		ie.Sentiment = strconv.FormatFloat(*e.Sentiment, 'f', -1, 64)
	}
	return ie
}
