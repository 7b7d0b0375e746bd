package authz

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/auth"
)

// avpPair is a request Verified Permissions should receive and the answer
// it gives (testdata/avp). They were written from the API reference, not
// captured from AWS: no test here calls AWS.
type avpPair struct {
	Request  json.RawMessage `json:"request"`
	Status   int             `json:"status"`
	Response json.RawMessage `json:"response"`
	Want     struct {
		Allow   bool     `json:"allow"`
		Reasons []string `json:"reasons"`
		Errors  []string `json:"errors"`
		Error   string   `json:"error"`
	} `json:"want"`
}

var avpRequests = map[string]Request{
	"developer-reads-own-run.json": {
		Principal: auth.Principal{ID: "user:dev-1", Kind: auth.KindUser, Name: "dev", Tenant: "acme", Roles: []string{"developer"}},
		Action:    ActRead,
		Resource:  Resource{Type: TypeRun, ID: "01run", Tenant: "acme", Attrs: map[string]string{"pipeline": "ci", "state": "running"}},
	},
	"viewer-submits.json": {
		Principal: auth.Principal{ID: "token:ci", Kind: auth.KindToken, Name: "ci", Tenant: "acme", Roles: []string{"viewer"}, Groups: []string{"qa"}},
		Action:    ActSubmit,
		Resource:  Resource{Type: TypePipeline, ID: "ci.yaml", Tenant: "acme", Attrs: map[string]string{"file": "ci.yaml"}},
	},
	"admin-audit-throttled.json": {Principal: auth.LocalAdminPrincipal, Action: ActReadAudit, Resource: Cluster()},
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func TestVerifiedPermissionsAgainstHandWrittenPairs(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/avp/*.json")
	if len(files) != len(avpRequests) {
		t.Fatalf("%d pairs in testdata, %d requests in the test", len(files), len(avpRequests))
	}
	creds := AWSCredentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", SessionToken: "session-xyz"}
	now := time.Date(2025, 3, 1, 12, 30, 0, 0, time.UTC)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var pair avpPair
		if err := json.Unmarshal(data, &pair); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			problems := []string{}
			if r.Method != "POST" || r.URL.Path != "/" {
				problems = append(problems, "request line "+r.Method+" "+r.URL.Path)
			}
			if r.Header.Get("Content-Type") != "application/x-amz-json-1.0" || r.Header.Get("X-Amz-Target") != "VerifiedPermissions.IsAuthorized" {
				problems = append(problems, "protocol headers "+r.Header.Get("Content-Type")+" "+r.Header.Get("X-Amz-Target"))
			}
			if r.Header.Get("X-Amz-Date") != "20250301T123000Z" || r.Header.Get("X-Amz-Security-Token") != "session-xyz" {
				problems = append(problems, "date or session token")
			}
			authz := r.Header.Get("Authorization")
			wantPrefix := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250301/eu-west-1/verifiedpermissions/aws4_request, " +
				"SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="
			if !strings.HasPrefix(authz, wantPrefix) {
				problems = append(problems, "authorization "+authz)
			}
			// The signature, computed again over what arrived.
			check, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.Path, nil)
			for _, h := range []string{"Content-Type", "X-Amz-Target"} {
				check.Header.Set(h, r.Header.Get(h))
			}
			SignV4(check, body, creds, "eu-west-1", "verifiedpermissions", now)
			if check.Header.Get("Authorization") != authz {
				problems = append(problems, "signature does not verify")
			}
			if !jsonEqual(t, body, pair.Request) {
				problems = append(problems, "body "+string(body))
			}
			if len(problems) > 0 {
				t.Errorf("%s: %s", f, strings.Join(problems, "; "))
				w.WriteHeader(400)
				return
			}
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.WriteHeader(pair.Status)
			w.Write(pair.Response)
		}))
		v := &VerifiedPermissions{PolicyStoreID: "PSEXAMPLEabcdefg111111", Region: "eu-west-1", Endpoint: fake.URL,
			Credentials: creds, Now: func() time.Time { return now }}
		d, err := v.Authorize(context.Background(), avpRequests[filepath.Base(f)])
		fake.Close()
		if pair.Want.Error != "" {
			if err == nil || !strings.Contains(err.Error(), pair.Want.Error) {
				t.Errorf("%s: err = %v, want one with %q", f, err, pair.Want.Error)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if d.Allow != pair.Want.Allow || !slices.Equal(d.Reasons, pair.Want.Reasons) || !slices.Equal(d.Errors, pair.Want.Errors) {
			t.Errorf("%s: decision %+v, want %+v", f, d, pair.Want)
		}
	}
}

// TestSignV4KnownAnswer checks the signer against the worked example of
// the S3 documentation ("GET Object", signature f0e8bdb8…).
func TestSignV4KnownAnswer(t *testing.T) {
	t.Parallel()
	req, _ := http.NewRequest("GET", "https://examplebucket.s3.amazonaws.com/test.txt", nil)
	req.Header.Set("Range", "bytes=0-9")
	req.Header.Set("X-Amz-Content-Sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
	SignV4(req, nil, AWSCredentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		"us-east-1", "s3", time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC))
	want := "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, " +
		"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, " +
		"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
	if got := req.Header.Get("Authorization"); got != want {
		t.Errorf("Authorization:\n got %s\nwant %s", got, want)
	}

	// The signature-v4 test suite's get-vanilla.
	req, _ = http.NewRequest("GET", "https://example.amazonaws.com/", nil)
	SignV4(req, nil, AWSCredentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
		"us-east-1", "service", time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC))
	want = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, " +
		"Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
	if got := req.Header.Get("Authorization"); got != want {
		t.Errorf("get-vanilla Authorization:\n got %s\nwant %s", got, want)
	}
}
