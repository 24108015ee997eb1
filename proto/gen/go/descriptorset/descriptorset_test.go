package descriptorset_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/churnwatch/churnwatch/proto/gen/go/descriptorset"
)

func TestSetCarriesComments(t *testing.T) {
	r, err := descriptorset.NewResolver()
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.FindDescriptorByName("churnwatch.v1.AlertUpdate")
	if err != nil {
		t.Fatal(err)
	}
	loc := d.ParentFile().SourceLocations().ByDescriptor(d)
	if !strings.Contains(loc.LeadingComments, "carried on churnwatch.alerts.v1") {
		t.Fatalf("AlertUpdate's comment not in the set: %q", loc.LeadingComments)
	}
	if _, ok := d.(protoreflect.MessageDescriptor); !ok {
		t.Fatalf("%T", d)
	}
	// What the set lacks comes from the linked-in registry.
	if _, err := r.FindDescriptorByName("google.protobuf.FileDescriptorProto"); err != nil {
		t.Fatalf("fallback: %v", err)
	}
}
