package format

import (
	"bytes"
	"encoding/json"
	"testing"
)

// refDuplicateKey is duplicateKey the slow, obvious way: walk the
// top-level object with encoding/json's tokenizer and compare every pair
// of keys as encoding/json matches keys to fields (bytes.EqualFold).
func refDuplicateKey(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		k := tok.(string)
		for _, o := range keys {
			if bytes.EqualFold([]byte(o), []byte(k)) {
				return true
			}
		}
		keys = append(keys, k)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

// FuzzDuplicateKey checks the fast scanner against the reference on every
// valid JSON object, and that it never panics on anything json.Unmarshal
// accepts.
func FuzzDuplicateKey(f *testing.F) {
	for _, s := range []string{
		`{"amount":"5.00","amount":"999999.00"}`,
		`{"amount":"5.00","AMOUNT":"9"}`,
		`{"a\u006d":1,"am":2}`,
		`{"bank":1,"ban\u212a":2}`,
		`{"sentiment":1,"\u017fentiment":2}`,
		`{"x":{"a":1,"a":2},"y":[1,{"z":"}"}],"x ":3}`,
		`{"e":"\"","e\"":1}`,
		`{}`, `[]`, `"s"`, `{"a":[[[]]],"b":{"c":{}},"a":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v any
		if json.Unmarshal(b, &v) != nil {
			return
		}
		_, err := duplicateKey(b, "eventId")
		if got, want := err != nil, refDuplicateKey(b); got != want {
			t.Fatalf("duplicateKey(%q) = %v, reference says %v", b, err, want)
		}
	})
}
