package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// TestCanonicalEncodingIsEncodingJSONs: the hand-written encoding of a
// record is byte for byte what encoding/json writes, which Verify checks,
// for plain records and for those with text encoding/json escapes.
func TestCanonicalEncodingIsEncodingJSONs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	texts := []string{"", "a", "user:u-bob", `Hodei::Run::"01"`, "<script>&", "é", "tab\there", "\u2028", "\xff", "/api/v1/runs?x=1&y=2", "ok"}
	pick := func() string { return texts[rng.IntN(len(texts))] }
	for i := range 5000 {
		r := Record{
			Seq: rng.Int64N(1 << 40), Time: time.Unix(rng.Int64N(1<<33), rng.Int64N(1e9)).UTC().Round(0),
			Principal: pick(), PrincipalName: pick(), Tenant: pick(), Action: pick(), Resource: pick(), Decision: pick(),
			Status: rng.IntN(3) * 200, Reason: pick(), Remote: pick(), RequestID: pick(), Method: pick(), Path: pick(),
			Query: pick(), BodyBytes: rng.Int64N(3), BodySHA256: pick(), Prev: pick(),
		}
		if i%7 == 0 {
			r.Lengths = map[string]int{"path": 500}
		}
		if i%11 == 0 {
			r.Time = time.Time{}
		}
		want, _ := json.Marshal(r)
		if got := appendCanonical(nil, r); !bytes.Equal(got, want) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
