package service

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	v1reflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alphareflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"github.com/churnwatch/churnwatch/proto/gen/go/descriptorset"
)

// registerReflection registers server reflection (v1 and v1alpha, as
// reflection.Register does) serving churnwatch's descriptors from the
// embedded descriptor set, which keeps the .proto comments: grpcurl
// describe shows them. The generated Go descriptors have no source info.
func registerReflection(s *grpc.Server) {
	opts := reflection.ServerOptions{Services: s}
	if r, err := descriptorset.NewResolver(); err == nil {
		opts.DescriptorResolver = r
	} // else: the set is built and tested with the code; fall back to the generated descriptors
	svr := reflection.NewServerV1(opts)
	v1reflectiongrpc.RegisterServerReflectionServer(s, svr)
	v1alphareflectiongrpc.RegisterServerReflectionServer(s, reflection.NewServer(opts))
}
