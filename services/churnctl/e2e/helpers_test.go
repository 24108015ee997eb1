package e2e

import "google.golang.org/grpc"

type clientConn = grpc.ClientConn
