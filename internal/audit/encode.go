package audit

import (
	"encoding/json"
	"strconv"
	"time"
)

// appendCanonical appends the canonical encoding of r (without its hash):
// exactly what encoding/json writes for it, which Verify checks, built
// without reflection. Records with text that encoding/json would escape,
// or with Lengths, are left to encoding/json.
func appendCanonical(b []byte, r Record) []byte {
	if r.Lengths != nil || r.Time.Year() < 0 || r.Time.Year() > 9999 || !plain(r) {
		r.Hash = ""
		j, _ := json.Marshal(r) // a Record always encodes
		return append(b, j...)
	}
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = str(b, "principal", r.Principal, false)
	b = str(b, "principal_name", r.PrincipalName, true)
	b = str(b, "tenant", r.Tenant, true)
	b = str(b, "action", r.Action, false)
	b = str(b, "resource", r.Resource, false)
	b = str(b, "decision", r.Decision, false)
	if r.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(r.Status), 10)
	}
	b = str(b, "reason", r.Reason, true)
	b = str(b, "remote", r.Remote, true)
	b = str(b, "request_id", r.RequestID, true)
	b = str(b, "method", r.Method, true)
	b = str(b, "path", r.Path, true)
	b = str(b, "query", r.Query, true)
	if r.BodyBytes != 0 {
		b = append(b, `,"body_bytes":`...)
		b = strconv.AppendInt(b, r.BodyBytes, 10)
	}
	b = str(b, "body_sha256", r.BodySHA256, true)
	b = str(b, "prev", r.Prev, false)
	return append(b, '}')
}

func str(b []byte, name, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":"`...)
	b = append(b, v...)
	return append(b, '"')
}

// plain reports whether every text of r is printable ASCII that
// encoding/json writes as it is.
func plain(r Record) bool {
	for _, s := range [...]string{r.Principal, r.PrincipalName, r.Tenant, r.Action, r.Resource, r.Decision, r.Reason,
		r.Remote, r.RequestID, r.Method, r.Path, r.Query, r.BodySHA256, r.Prev} {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
		}
	}
	return true
}
