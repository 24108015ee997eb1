// Package format decodes the input formats of SPEC §2 — account events as
// NDJSON, JSON arrays or CSV, customer profiles as NDJSON or JSON arrays —
// into the Incoming* messages the ingester validates. Decoding is
// record-by-record and never panics: a line that is not a record becomes a
// Record with Err set and its line number, so the caller can reject exactly
// that line and keep the rest. Only input that cannot be read as a whole
// (a broken JSON array, an unusable CSV header, a read error) stops a
// Reader.
package format

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"

	cwv1 "github.com/churnwatch/churnwatch/proto/gen/go/churnwatch/v1"
	"github.com/churnwatch/churnwatch/services/ingester/validate"
)

// MaxLine is the longest line accepted in NDJSON and CSV input. A record
// is a few hundred bytes; a longer line is refused rather than buffered.
const MaxLine = 1 << 20

// Record is one decoded input record.
type Record[T any] struct {
	// Line is the 1-based line where the record starts (0 in a JSON array).
	Line int
	// Index is the 0-based position of the record among the input's records.
	Index int
	// Value is the decoded record; on a decode error it holds what could be
	// recovered (often the id) and is never nil.
	Value T
	// Err says why the record could not be decoded (a *validate.Error with
	// CodeDecode); nil when Value is complete.
	Err error
}

// Reader yields records until io.EOF. Any other error means the input as a
// whole is unreadable; the records returned before it stand.
type Reader[T any] interface {
	Next() (Record[T], error)
}

// Kind is an input format.
type Kind int

// Kinds.
const (
	NDJSON Kind = iota
	JSONArray
	CSV
)

func (k Kind) String() string {
	return [...]string{"ndjson", "json-array", "csv"}[k]
}

// Detect picks the format of an input from its file name and, when the
// name does not tell, its first non-blank bytes: '{' NDJSON, '[' a JSON
// array, anything else CSV with a header row. It peeks at r without
// consuming.
func Detect(name string, r *bufio.Reader) Kind {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return CSV
	case ".ndjson", ".jsonl":
		return NDJSON
	}
	for n := 64; ; n *= 4 {
		b, err := r.Peek(n)
		b = bytes.TrimPrefix(b, bom)
		if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 {
			switch t[0] {
			case '{':
				return NDJSON
			case '[':
				return JSONArray
			}
			return CSV
		}
		if err != nil || n >= MaxLine {
			// Empty input: any reader yields nothing.
			return NDJSON
		}
	}
}

var bom = []byte("\xef\xbb\xbf")

func decodeErr(format string) error {
	return &validate.Error{Code: validate.CodeDecode, Msg: format}
}

// lines reads an input line by line, counting them, and refuses lines
// longer than MaxLine without holding them in memory.
type lines struct {
	r    *bufio.Reader
	line int
	buf  []byte
}

func newLines(r io.Reader) *lines {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &lines{r: br}
}

var errLineTooLong = errors.New("line too long")

// next returns the next line without its end of line, its 1-based number,
// and errLineTooLong (with the line number) for an overlong line.
func (l *lines) next() ([]byte, int, error) {
	l.buf = l.buf[:0]
	tooLong := false
	for {
		chunk, err := l.r.ReadSlice('\n')
		if !tooLong {
			if len(l.buf)+len(chunk) > MaxLine+2 {
				tooLong, l.buf = true, l.buf[:0]
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, l.line, err
		}
		if errors.Is(err, io.EOF) && len(chunk) == 0 && len(l.buf) == 0 && !tooLong {
			return nil, l.line, io.EOF
		}
		l.line++
		if l.line == 1 {
			l.buf = bytes.TrimPrefix(l.buf, bom)
		}
		if tooLong {
			return nil, l.line, errLineTooLong
		}
		return bytes.TrimRight(l.buf, "\r\n"), l.line, nil
	}
}

// ndjson decodes one JSON object per line; blank lines are skipped.
type ndjson[T any] struct {
	lines  *lines
	index  int
	decode func([]byte) (T, error)
}

func (d *ndjson[T]) Next() (Record[T], error) {
	for {
		b, line, err := d.lines.next()
		if errors.Is(err, errLineTooLong) {
			rec := Record[T]{Line: line, Index: d.index, Err: decodeErr("line longer than 1 MiB")}
			rec.Value, _ = d.decode(nil)
			d.index++
			return rec, nil
		}
		if err != nil {
			return Record[T]{}, err
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		v, derr := d.decode(b)
		rec := Record[T]{Line: line, Index: d.index, Value: v, Err: derr}
		d.index++
		return rec, nil
	}
}

// jsonArray decodes the elements of one JSON array; an element that is not
// an object of the right shape is a record error, broken JSON stops it.
type jsonArray[T any] struct {
	dec     *jsonDecoder
	index   int
	started bool
	done    bool
	decode  func([]byte) (T, error)
}

func (d *jsonArray[T]) Next() (Record[T], error) {
	if d.done {
		return Record[T]{}, io.EOF
	}
	if !d.started {
		d.started = true
		if err := d.dec.open(); err != nil {
			d.done = true
			return Record[T]{}, err
		}
	}
	raw, err := d.dec.element()
	if err != nil {
		d.done = true
		return Record[T]{}, err
	}
	if raw == nil {
		d.done = true
		return Record[T]{}, io.EOF
	}
	v, derr := d.decode(raw)
	rec := Record[T]{Index: d.index, Value: v, Err: derr}
	d.index++
	return rec, nil
}

// Events returns a reader of account events in format k.
func Events(k Kind, r io.Reader) Reader[*cwv1.IncomingEvent] {
	switch k {
	case CSV:
		return &csvEvents{lines: newLines(r)}
	case JSONArray:
		return &jsonArray[*cwv1.IncomingEvent]{dec: newJSONDecoder(r), decode: decodeEventJSON}
	default:
		return &ndjson[*cwv1.IncomingEvent]{lines: newLines(r), decode: decodeEventJSON}
	}
}

// Customers returns a reader of customer profiles as NDJSON or a JSON
// array (customers have no CSV form in SPEC §2).
func Customers(k Kind, r io.Reader) Reader[*cwv1.IncomingCustomer] {
	if k == JSONArray {
		return &jsonArray[*cwv1.IncomingCustomer]{dec: newJSONDecoder(r), decode: decodeCustomerJSON}
	}
	return &ndjson[*cwv1.IncomingCustomer]{lines: newLines(r), decode: decodeCustomerJSON}
}
