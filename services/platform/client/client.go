// Package client dials churnwatch gRPC services with a bearer token,
// keepalive and optional TLS, for churnctl, tests and other services.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// TLS configures a TLS connection; zero value means plaintext.
type TLS struct {
	CAFile   string // server CA; enables TLS
	CertFile string // client certificate for mTLS
	KeyFile  string
}

// Config is the client TLS configuration: the CA's pool as roots (the
// system roots when CAFile is empty) and the client certificate, if any.
func (t TLS) Config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca file holds no certificate")
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// Dial opens a connection to addr sending token on every call.
func Dial(addr, token string, t TLS) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}
	if t.CAFile != "" {
		tc, err := t.Config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: token, secure: t.CAFile != ""}))
	}
	return grpc.NewClient(addr, opts...)
}

// CheckHealth asks the standard health service whether addr is SERVING.
func CheckHealth(ctx context.Context, addr string, t TLS) error {
	conn, err := Dial(addr, "", t)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s is %s", addr, resp.Status)
	}
	return nil
}

// Healthcheck is the `<service> healthcheck` subcommand of every service
// (container HEALTHCHECK): it checks the local gRPC health at
// CHURNWATCH_GRPC_ADDR (defaultAddr when unset; a wildcard host is reached
// on 127.0.0.1), trusting CHURNWATCH_TLS_CA when TLS is on.
func Healthcheck(ctx context.Context, getenv func(string) string, defaultAddr string) error {
	addr := getenv("CHURNWATCH_GRPC_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	if rest, ok := strings.CutPrefix(addr, "0.0.0.0:"); ok {
		addr = "127.0.0.1:" + rest
	} else if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return CheckHealth(ctx, addr, TLS{CAFile: getenv("CHURNWATCH_TLS_CA"), CertFile: getenv("CHURNWATCH_TLS_CLIENT_CERT"), KeyFile: getenv("CHURNWATCH_TLS_CLIENT_KEY")})
}
