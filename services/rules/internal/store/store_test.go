package store

import (
	"bytes"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, e := range []Envelope{{Partition: 0, Offset: -1}, {Partition: 2, Offset: 1 << 40, State: []byte("state")}} {
		got, err := UnmarshalEnvelope(MarshalEnvelope(e))
		if err != nil || got.Partition != e.Partition || got.Offset != e.Offset || !bytes.Equal(got.State, e.State) {
			t.Fatalf("%+v → %+v, %v", e, got, err)
		}
	}
	if _, err := UnmarshalEnvelope([]byte{9, 1, 1}); err == nil {
		t.Fatal("unknown envelope version accepted")
	}
}

func TestProfileEncoding(t *testing.T) {
	p := Profile{Tier: "MASS", Manager: "rm-1", Branch: "br-1"}
	if got := decodeProfile(p.encode()); got != p {
		t.Fatalf("%+v", got)
	}
	if got := decodeProfile("BASIC"); got.Tier != "BASIC" || got.Manager != "" {
		t.Fatalf("%+v", got)
	}
}

// FuzzUnmarshalEnvelope: bytes read back from Redis never panic, and what
// decodes re-encodes to the same bytes.
func FuzzUnmarshalEnvelope(f *testing.F) {
	f.Add(MarshalEnvelope(Envelope{Partition: 1, Offset: 7, State: []byte{1, 2}}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := UnmarshalEnvelope(b)
		if err != nil {
			return
		}
		if e2, err := UnmarshalEnvelope(MarshalEnvelope(e)); err != nil || e2.Partition != e.Partition || e2.Offset != e.Offset || !bytes.Equal(e2.State, e.State) {
			t.Fatalf("re-decode of %x: %+v %v", b, e2, err)
		}
	})
}
