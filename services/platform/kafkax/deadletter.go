package kafkax

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"
)

// Headers every dead letter carries, whichever consumer parked it, besides
// the original key, value and headers (the CloudEvents ones included; a
// record that had none gets TypeDeadLetter ones).
const (
	HeaderReason          = "cw-reason"       // the detail: "too late", "decode: …", "panic: …"
	HeaderReasonClass     = "cw-reason-class" // a short stable class, the DLQ metric's label
	HeaderSourceTopic     = "cw-source-topic"
	HeaderSourcePartition = "cw-source-partition"
	HeaderSourceOffset    = "cw-source-offset"
)

// ClassPanic is the reason class of a record the handler panicked on.
const ClassPanic = "panic"

// maxReason bounds the cw-reason header (a panic value can be long).
const maxReason = 512

// DeadLetter builds the DLQ record for m, read from topic (m.Topic if
// topic is ""), that could not be processed: class is a short stable label
// (too_late, decode, invalid, panic), reason the detail.
func DeadLetter(m *kafka.Message, topic, class, reason string) kafka.Message {
	if topic == "" {
		topic = m.Topic
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	hs := make([]kafka.Header, 0, len(m.Headers)+5)
	hs = append(hs, m.Headers...)
	hs = append(hs,
		kafka.Header{Key: HeaderReason, Value: []byte(reason)},
		kafka.Header{Key: HeaderReasonClass, Value: []byte(class)},
		kafka.Header{Key: HeaderSourceTopic, Value: []byte(topic)},
		kafka.Header{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafka.Header{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
	)
	dl := kafka.Message{Key: m.Key, Value: m.Value, Headers: hs}
	if headerValue(m.Headers, HeaderCEID) == "" {
		deadLetterEvent(m, topic).Stamp(&dl)
	}
	return dl
}

// PoisonError says that one record of a batch cannot be processed: the
// consumer parks it on the DLQ with Class and Reason and handles the rest
// of the batch without it.
type PoisonError struct {
	Partition int
	Offset    int64
	Class     string
	Reason    string
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("poison record %d@%d: %s", e.Partition, e.Offset, e.Reason)
}

// Poison returns the error a handler returns for a record it can never
// process.
func Poison(m *kafka.Message, class, reason string) error {
	return &PoisonError{Partition: m.Partition, Offset: m.Offset, Class: class, Reason: reason}
}

// panicError is a panic of a handler, recovered.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// fatalError stops the consumer.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

// Fatal marks err as one that retrying cannot cure and that is not any one
// record's fault: the consumer stops with it, committing nothing more (the
// records in hand are redelivered to whoever takes over).
func Fatal(err error) error { return fatalError{err} }

func isFatal(err error) bool {
	var f fatalError
	return errors.As(err, &f)
}

// isPoison reports whether err blames a record of the batch (a panic, or a
// PoisonError) rather than a dependency.
func isPoison(err error) bool {
	var pe *PoisonError
	var pa *panicError
	return errors.As(err, &pe) || errors.As(err, &pa)
}
