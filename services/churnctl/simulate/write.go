package simulate

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// WriteDir writes customers.ndjson, events.ndjson and labels.ndjson into
// dir, creating it if needed.
func (b *Bank) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output dir: %w", err)
	}
	if err := writeNDJSON(filepath.Join(dir, "customers.ndjson"), b.Customers); err != nil {
		return err
	}
	if err := writeNDJSON(filepath.Join(dir, "events.ndjson"), b.Events); err != nil {
		return err
	}
	return writeNDJSON(filepath.Join(dir, "labels.ndjson"), b.Labels)
}

func writeNDJSON[T any](path string, records []T) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write %s: %w", filepath.Base(path), cerr)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<16)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range records {
		if err := enc.Encode(&records[i]); err != nil {
			return fmt.Errorf("write %s: %w", filepath.Base(path), err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}
