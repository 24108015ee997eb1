package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/mapping"
)

// convertWithMapping loads a mapping file and converts the export in dir
// (default: the mapping's own directory) with it.
func convertWithMapping(mappingFile, dir string) (*mapping.Output, error) {
	src, err := os.ReadFile(mappingFile)
	if err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: err}
	}
	m, err := mapping.Load(src)
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s: %w (fix the mapping; docs/ingest.md, \"Mappings\", describes the format)", mappingFile, err)}
	}
	if dir == "" {
		dir = filepath.Dir(mappingFile)
	}
	out, err := m.Convert(func(p string) (io.ReadCloser, error) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		return os.Open(p)
	})
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("%w (give the export's directory as the argument or with --data)", err)}
		}
		return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s: %w", mappingFile, err)}
	}
	return out, nil
}

// mappedReason names the file of a rejected row: a mapping reads several.
func mappedReason(file string, err error) string {
	return file + ": " + err.Error()
}

// upsertMappedCustomers sends the customers a mapping derived before its
// events, so that every event finds its profile.
func upsertMappedCustomers(ctx context.Context, cl cwv1.IngestServiceClient, fl ingestFlags, recs []mapping.Record[*cwv1.IncomingCustomer], sum *IngestSummary) error {
	var held []line[*cwv1.IncomingCustomer]
	send := func() error {
		cs := make([]*cwv1.IncomingCustomer, len(held))
		for i, l := range held {
			cs[i] = l.rec
		}
		var resp *cwv1.UpsertCustomersResponse
		err := Retrying(ctx, fl.retry, func(ctx context.Context) (err error) {
			resp, err = cl.UpsertCustomers(ctx, &cwv1.UpsertCustomersRequest{Customers: cs})
			return err
		})
		if err != nil {
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%v (running the command again is safe)", RPCError("ingester", err))}
		}
		sum.Customers += int(resp.Accepted)
		for _, r := range resp.Results {
			if r.Status == cwv1.RecordStatus_RECORD_STATUS_REJECTED && int(r.Index) < len(held) {
				sum.reject(held[r.Index].line, r.Id, true, r.Reason)
			}
		}
		held = held[:0]
		return nil
	}
	for _, r := range recs {
		if r.Err != nil {
			sum.reject(r.Line, r.Value.GetCustomerId(), true, mappedReason(r.File, r.Err))
			continue
		}
		held = append(held, line[*cwv1.IncomingCustomer]{line: r.Line, rec: r.Value})
		if len(held) >= fl.batch {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if len(held) > 0 {
		return send()
	}
	return nil
}
