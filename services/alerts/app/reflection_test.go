package app_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/alerts/app"
)

// Reflection serves the descriptor set with source info: a client sees the
// .proto comments of AlertService, with no token (SPEC §3).
func TestReflectionServesComments(t *testing.T) {
	e := start(t, nil)
	conn, err := grpc.NewClient(e.app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(symbol string) []*descriptorpb.FileDescriptorProto {
		t.Helper()
		if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if er := resp.GetErrorResponse(); er != nil {
			t.Fatalf("%s: %s", symbol, er.GetErrorMessage())
		}
		var out []*descriptorpb.FileDescriptorProto
		for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			fd := &descriptorpb.FileDescriptorProto{}
			if err := proto.Unmarshal(b, fd); err != nil {
				t.Fatal(err)
			}
			out = append(out, fd)
		}
		return out
	}
	var comment string
	for _, fd := range ask("churnwatch.v1.AlertService") {
		if fd.GetName() != "churnwatch/v1/alert_service.proto" {
			continue
		}
		for _, loc := range fd.GetSourceCodeInfo().GetLocation() {
			// path [6, 0]: the file's first service.
			if len(loc.GetPath()) == 2 && loc.GetPath()[0] == 6 && loc.GetPath()[1] == 0 {
				comment = loc.GetLeadingComments()
			}
		}
	}
	if !strings.Contains(comment, "AlertService hands alerts to managers") {
		t.Fatalf("AlertService's comment over reflection: %q", comment)
	}
	// Services outside the set still resolve (from the linked-in registry).
	if fds := ask("grpc.health.v1.Health"); len(fds) == 0 {
		t.Fatal("health service not described")
	}

	grpcurl, err := exec.LookPath("grpcurl")
	if err != nil {
		t.Log("grpcurl not on PATH: the grpcurl check is left out")
		return
	}
	out, err := exec.Command(grpcurl, "-plaintext", e.app.GRPCAddr(), "describe", "churnwatch.v1.AlertService").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "AlertService hands alerts to managers") {
		t.Fatalf("grpcurl describe: %v\n%s", err, out)
	}
}

// A record of churnwatch.alerts.v1 decodes with the committed descriptor
// set alone, as a client without churnwatch's Go code decodes it: with
// dynamicpb here, and with buf convert (docs/integration.md).
func TestRecordDecodesWithDescriptorSet(t *testing.T) {
	e := start(t, nil)
	e.profile("CD", "rm-1", "br-1", cwv1.Tier_TIER_HIGH_NET_WORTH)
	e.profilesCaughtUp()
	e.signal("s-desc-1", "CD", "outflow.large", 80)
	var rec app.TopicRecord
	waitFor(t, 20*time.Second, "an alert update for CD on the topic", func() bool {
		for _, r := range e.topicRecords() {
			if r.Key == "CD" {
				rec = r
			}
		}
		return rec.Value != nil
	})
	setFile := filepath.Join("..", "..", "..", "proto", "churnwatch.binpb")
	raw, err := os.ReadFile(setFile)
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatal(err)
	}
	// The content-type header names the message to decode with.
	name := strings.TrimPrefix(rec.Headers["content-type"], "application/protobuf; messageType=")
	d, err := files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		t.Fatalf("content-type %q: %v", rec.Headers["content-type"], err)
	}
	msg := dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))
	if err := proto.Unmarshal(rec.Value, msg); err != nil {
		t.Fatal(err)
	}
	js, err := protojson.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	id := rec.Update.GetAlert().GetAlertId()
	if !strings.Contains(string(js), `"alertId":"`+id+`"`) || !strings.Contains(string(js), `"change":"ALERT_CHANGE_CREATED"`) {
		t.Fatalf("decoded with the set: %s", js)
	}

	buf, err := exec.LookPath("buf")
	if err != nil {
		t.Fatalf("buf not on PATH (make test installs it into .tools/bin): %v", err)
	}
	in := filepath.Join(t.TempDir(), "record.binpb")
	if err := os.WriteFile(in, rec.Value, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(buf, "convert", setFile, "--type", name, "--from", in, "--to", "-#format=json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"alertId":"`+id+`"`) {
		t.Fatalf("buf convert: %v\n%s", err, out)
	}
}
