package app_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
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
