// Package descriptorset embeds churnwatch.binpb, the FileDescriptorSet of
// proto/churnwatch/v1 with its imports and source info (the .proto
// comments), built by `make proto` (buf build --as-file-descriptor-set).
// proto/churnwatch.binpb is the same file, for clients that decode
// records without Go (buf convert, kcat | protoc --decode).
//
// The generated Go descriptors carry no source info; gRPC reflection
// serves these instead, so that grpcurl describe shows the comments.
package descriptorset

import (
	_ "embed"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

//go:embed churnwatch.binpb
var raw []byte

// Bytes returns the serialized FileDescriptorSet.
func Bytes() []byte { return raw }

// Files returns the descriptors of the set, with source info.
var Files = sync.OnceValues(func() (*protoregistry.Files, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		return nil, err
	}
	return protodesc.NewFiles(&set)
})

// Resolver finds descriptors in the set first and in protoregistry.GlobalFiles
// for the rest (grpc.health.v1, grpc.reflection.v1 and anything linked in
// that is not part of churnwatch's contracts).
type Resolver struct{ Files *protoregistry.Files }

// NewResolver returns the Resolver over Files.
func NewResolver() (Resolver, error) {
	f, err := Files()
	if err != nil {
		return Resolver{}, err
	}
	return Resolver{Files: f}, nil
}

// FindFileByPath implements protodesc.Resolver.
func (r Resolver) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := r.Files.FindFileByPath(path); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

// FindDescriptorByName implements protodesc.Resolver.
func (r Resolver) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.Files.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}
