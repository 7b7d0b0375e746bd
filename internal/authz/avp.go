package authz

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cedar-policy/cedar-go/types"
)

// VerifiedPermissions decides requests with Amazon Verified Permissions
// (the IsAuthorized operation), against a policy store that holds Hodei's
// schema (see "hodei policy schema --json") and policies. It sends the same
// entities as the in-process Cedar backend. It speaks the AWS JSON 1.0
// protocol with Signature Version 4 itself, so Hodei needs no AWS SDK.
//
// Tested only against a loopback fake that checks requests built from the
// API reference; no call to AWS is made by the tests.
type VerifiedPermissions struct {
	PolicyStoreID string
	Region        string
	// Endpoint is https://verifiedpermissions.REGION.amazonaws.com if empty.
	Endpoint    string
	Credentials AWSCredentials
	HTTPClient  *http.Client
	Now         func() time.Time
}

var _ Authorizer = (*VerifiedPermissions)(nil)

// AWSCredentials sign requests.
type AWSCredentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// AWSCredentialsFromEnv reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN.
func AWSCredentialsFromEnv() (AWSCredentials, error) {
	c := AWSCredentials{AccessKeyID: os.Getenv("AWS_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		SessionToken: os.Getenv("AWS_SESSION_TOKEN")}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return c, errors.New("verified permissions: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	return c, nil
}

// avpEntityID is an EntityIdentifier (and an ActionIdentifier, with other
// member names).
type avpEntityID struct {
	EntityType string `json:"entityType"`
	EntityID   string `json:"entityId"`
}

type avpActionID struct {
	ActionType string `json:"actionType"`
	ActionID   string `json:"actionId"`
}

type avpEntity struct {
	Identifier avpEntityID            `json:"identifier"`
	Attributes map[string]avpAttValue `json:"attributes,omitempty"`
	Parents    []avpEntityID          `json:"parents,omitempty"`
}

// avpAttValue is an AttributeValue: one member set.
type avpAttValue struct {
	String           *string                `json:"string,omitempty"`
	Long             *int64                 `json:"long,omitempty"`
	Boolean          *bool                  `json:"boolean,omitempty"`
	EntityIdentifier *avpEntityID           `json:"entityIdentifier,omitempty"`
	Set              []avpAttValue          `json:"set,omitempty"`
	Record           map[string]avpAttValue `json:"record,omitempty"`
}

type avpIsAuthorizedInput struct {
	PolicyStoreID string      `json:"policyStoreId"`
	Principal     avpEntityID `json:"principal"`
	Action        avpActionID `json:"action"`
	Resource      avpEntityID `json:"resource"`
	Entities      struct {
		EntityList []avpEntity `json:"entityList"`
	} `json:"entities"`
}

type avpIsAuthorizedOutput struct {
	Decision            string `json:"decision"`
	DeterminingPolicies []struct {
		PolicyID string `json:"policyId"`
	} `json:"determiningPolicies"`
	Errors []struct {
		ErrorDescription string `json:"errorDescription"`
	} `json:"errors"`
}

func avpID(u types.EntityUID) avpEntityID {
	return avpEntityID{EntityType: string(u.Type), EntityID: string(u.ID)}
}

func avpValue(v types.Value) (avpAttValue, error) {
	switch x := v.(type) {
	case types.String:
		s := string(x)
		return avpAttValue{String: &s}, nil
	case types.Long:
		n := int64(x)
		return avpAttValue{Long: &n}, nil
	case types.Boolean:
		b := bool(x)
		return avpAttValue{Boolean: &b}, nil
	case types.EntityUID:
		id := avpID(x)
		return avpAttValue{EntityIdentifier: &id}, nil
	}
	return avpAttValue{}, fmt.Errorf("verified permissions: attribute of type %T is not supported", v)
}

// IsAuthorizedInput builds the JSON body of an IsAuthorized call.
func (v *VerifiedPermissions) IsAuthorizedInput(req Request) ([]byte, error) {
	cr, ents, err := CedarRequest(req)
	if err != nil {
		return nil, err
	}
	in := avpIsAuthorizedInput{
		PolicyStoreID: v.PolicyStoreID,
		Principal:     avpID(cr.Principal),
		Action:        avpActionID{ActionType: string(cr.Action.Type), ActionID: string(cr.Action.ID)},
		Resource:      avpID(cr.Resource),
	}
	// A stable order: the same request always makes the same body.
	uids := make([]types.EntityUID, 0, len(ents))
	for u := range ents {
		uids = append(uids, u)
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i].String() < uids[j].String() })
	in.Entities.EntityList = []avpEntity{}
	for _, u := range uids {
		e := ents[u]
		ae := avpEntity{Identifier: avpID(u)}
		for k, val := range e.Attributes.All() {
			av, err := avpValue(val)
			if err != nil {
				return nil, err
			}
			if ae.Attributes == nil {
				ae.Attributes = map[string]avpAttValue{}
			}
			ae.Attributes[string(k)] = av
		}
		for p := range e.Parents.All() {
			ae.Parents = append(ae.Parents, avpID(p))
		}
		sort.Slice(ae.Parents, func(i, j int) bool {
			return ae.Parents[i].EntityType+ae.Parents[i].EntityID < ae.Parents[j].EntityType+ae.Parents[j].EntityID
		})
		in.Entities.EntityList = append(in.Entities.EntityList, ae)
	}
	return json.Marshal(in)
}

// Authorize implements Authorizer with one IsAuthorized call.
func (v *VerifiedPermissions) Authorize(ctx context.Context, req Request) (Decision, error) {
	body, err := v.IsAuthorizedInput(req)
	if err != nil {
		return Decision{}, fmt.Errorf("authz: %w", err)
	}
	endpoint := v.Endpoint
	if endpoint == "" {
		endpoint = "https://verifiedpermissions." + v.Region + ".amazonaws.com"
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(endpoint, "/")+"/", bytes.NewReader(body))
	if err != nil {
		return Decision{}, fmt.Errorf("verified permissions: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/x-amz-json-1.0")
	hreq.Header.Set("X-Amz-Target", "VerifiedPermissions.IsAuthorized")
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	SignV4(hreq, body, v.Credentials, v.Region, "verifiedpermissions", now())
	hc := v.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := hc.Do(hreq)
	if err != nil {
		return Decision{}, fmt.Errorf("verified permissions: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Decision{}, fmt.Errorf("verified permissions: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(data, &e)
		return Decision{}, fmt.Errorf("verified permissions: %s: %s %s", resp.Status, e.Type, e.Message)
	}
	var out avpIsAuthorizedOutput
	if err := json.Unmarshal(data, &out); err != nil {
		return Decision{}, fmt.Errorf("verified permissions: bad answer: %w", err)
	}
	d := Decision{}
	switch out.Decision {
	case "ALLOW":
		d.Allow = true
	case "DENY":
	default:
		return Decision{}, fmt.Errorf("verified permissions: unknown decision %q", out.Decision)
	}
	for _, p := range out.DeterminingPolicies {
		d.Reasons = append(d.Reasons, p.PolicyID)
	}
	for _, e := range out.Errors {
		d.Errors = append(d.Errors, e.ErrorDescription)
	}
	return d, nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// SignV4 signs req (whose body is body) with AWS Signature Version 4: it
// sets X-Amz-Date, X-Amz-Security-Token (with a session token) and
// Authorization, signing the Host header and every header already set.
func SignV4(req *http.Request, body []byte, c AWSCredentials, region, service string, t time.Time) {
	t = t.UTC()
	amzDate := t.Format("20060102T150405Z")
	day := t.Format("20060102")
	req.Header.Set("X-Amz-Date", amzDate)
	if c.SessionToken != "" {
		req.Header.Set("X-Amz-Security-Token", c.SessionToken)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	headers := map[string]string{"host": host}
	for k, vs := range req.Header {
		headers[strings.ToLower(k)] = strings.Join(strings.Fields(strings.Join(vs, ",")), " ")
	}
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	var canonHeaders strings.Builder
	for _, k := range names {
		canonHeaders.WriteString(k + ":" + headers[k] + "\n")
	}
	signed := strings.Join(names, ";")
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canonical := strings.Join([]string{req.Method, path, canonicalQuery(req), canonHeaders.String(), signed, sha256Hex(body)}, "\n")
	scope := day + "/" + region + "/" + service + "/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + sha256Hex([]byte(canonical))
	key := hmacSHA256([]byte("AWS4"+c.SecretAccessKey), day)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, service)
	key = hmacSHA256(key, "aws4_request")
	sig := hex.EncodeToString(hmacSHA256(key, toSign))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+c.AccessKeyID+"/"+scope+", SignedHeaders="+signed+", Signature="+sig)
}

func canonicalQuery(req *http.Request) string {
	q := req.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := q[k]
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, awsEscape(k)+"="+awsEscape(v))
		}
	}
	return strings.Join(parts, "&")
}

// awsEscape is URI encoding as SigV4 wants it: everything but unreserved
// characters, in upper-case hex.
func awsEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
