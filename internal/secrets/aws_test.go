package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

// fakeSecretsManager is a loopback stand-in for the AWS Secrets Manager
// JSON API (awsJson1_1: POST / with X-Amz-Target) covering what the AWS
// provider calls: GetSecretValue, PutSecretValue, CreateSecret, ListSecrets
// (paged), UpdateSecretVersionStage, DeleteSecret. It checks that requests
// are SigV4-signed with the test credentials and applies the AWSCURRENT /
// AWSPREVIOUS labels as the service documents. It is not AWS.
type fakeSecretsManager struct {
	mu      sync.Mutex
	secrets map[string]*fakeAWSSecret
	calls   []string
}

type fakeAWSSecret struct {
	name     string
	versions map[string]*fakeAWSVersion
	order    []string
	changed  time.Time
}

type fakeAWSVersion struct {
	value   string
	created time.Time
	stages  []string
}

func (s *fakeAWSSecret) withStage(stage string) string {
	for id, v := range s.versions {
		for _, st := range v.stages {
			if st == stage {
				return id
			}
		}
	}
	return ""
}

func (s *fakeAWSSecret) moveStage(stage, to string) {
	for _, v := range s.versions {
		out := v.stages[:0]
		for _, st := range v.stages {
			if st != stage {
				out = append(out, st)
			}
		}
		v.stages = out
	}
	if v := s.versions[to]; v != nil {
		v.stages = append(v.stages, stage)
	}
}

// makeCurrent labels version id AWSCURRENT and the previous current one
// AWSPREVIOUS.
func (s *fakeAWSSecret) makeCurrent(id string) {
	if prev := s.withStage("AWSCURRENT"); prev != "" && prev != id {
		s.moveStage("AWSPREVIOUS", prev)
	}
	s.moveStage("AWSCURRENT", id)
	s.changed = time.Now()
}

func awsError(w http.ResponseWriter, typ, msg string) {
	w.Header().Set("X-Amzn-Errortype", typ)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(400)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}

func epoch(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func (f *fakeSecretsManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
	if r.Method != http.MethodPost || r.URL.Path != "/" || !ok {
		awsError(w, "UnknownOperationException", "bad request")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDTEST/") {
		w.WriteHeader(403)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": "UnrecognizedClientException", "message": "unsigned"})
		return
	}
	var in map[string]any
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		awsError(w, "InvalidRequestException", "bad json")
		return
	}
	str := func(k string) string { s, _ := in[k].(string); return s }
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, op)
	// secret is the secret the request names, or nil once the error of
	// a missing one is written.
	secret := func() *fakeAWSSecret {
		s := f.secrets[str("SecretId")]
		if s == nil {
			awsError(w, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
		}
		return s
	}
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_ = json.NewEncoder(w).Encode(v)
	}
	arn := func(n string) string { return "arn:aws:secretsmanager:us-east-1:123456789012:secret:" + n }
	switch op {
	case "GetSecretValue":
		s := secret()
		if s == nil {
			return
		}
		id := str("VersionId")
		if id == "" {
			stage := str("VersionStage")
			if stage == "" {
				stage = "AWSCURRENT"
			}
			id = s.withStage(stage)
		}
		v := s.versions[id]
		if v == nil {
			awsError(w, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for VersionId")
			return
		}
		reply(map[string]any{"ARN": arn(s.name), "Name": s.name, "VersionId": id, "SecretString": v.value, "VersionStages": v.stages, "CreatedDate": epoch(v.created)})
	case "CreateSecret":
		if f.secrets[str("Name")] != nil {
			awsError(w, "ResourceExistsException", "the secret already exists")
			return
		}
		s := &fakeAWSSecret{name: str("Name"), versions: map[string]*fakeAWSVersion{}}
		id := str("ClientRequestToken")
		s.versions[id] = &fakeAWSVersion{value: str("SecretString"), created: time.Now()}
		s.order = append(s.order, id)
		s.makeCurrent(id)
		f.secrets[s.name] = s
		reply(map[string]any{"ARN": arn(s.name), "Name": s.name, "VersionId": id})
	case "PutSecretValue":
		s := secret()
		if s == nil {
			return
		}
		id := str("ClientRequestToken")
		if s.versions[id] == nil {
			s.versions[id] = &fakeAWSVersion{value: str("SecretString"), created: time.Now()}
			s.order = append(s.order, id)
			s.makeCurrent(id)
		}
		reply(map[string]any{"ARN": arn(s.name), "Name": s.name, "VersionId": id, "VersionStages": s.versions[id].stages})
	case "UpdateSecretVersionStage":
		s := secret()
		if s == nil {
			return
		}
		stage, to, from := str("VersionStage"), str("MoveToVersionId"), str("RemoveFromVersionId")
		if holder := s.withStage(stage); holder != "" && holder != from {
			awsError(w, "InvalidParameterException", "the label is attached to another version: name it in RemoveFromVersionId")
			return
		}
		if s.versions[to] == nil {
			awsError(w, "ResourceNotFoundException", "no such version")
			return
		}
		if stage == "AWSCURRENT" {
			s.makeCurrent(to)
		} else {
			s.moveStage(stage, to)
		}
		reply(map[string]any{"ARN": arn(s.name), "Name": s.name})
	case "ListSecrets":
		var prefix string
		if fs, _ := in["Filters"].([]any); len(fs) == 1 {
			fm, _ := fs[0].(map[string]any)
			if fm["Key"] == "name" {
				vals, _ := fm["Values"].([]any)
				if len(vals) == 1 {
					prefix, _ = vals[0].(string)
				}
			}
		}
		var names []string
		for n := range f.secrets {
			if strings.HasPrefix(n, prefix) {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		start, _ := strconv.Atoi(str("NextToken"))
		const page = 2 // small pages, so that the provider must follow NextToken
		end := min(start+page, len(names))
		var list []map[string]any
		for _, n := range names[start:end] {
			s := f.secrets[n]
			stages := map[string][]string{}
			for id, v := range s.versions {
				stages[id] = v.stages
			}
			list = append(list, map[string]any{"ARN": arn(n), "Name": n, "LastChangedDate": epoch(s.changed), "SecretVersionsToStages": stages})
		}
		out := map[string]any{"SecretList": list}
		if end < len(names) {
			out["NextToken"] = strconv.Itoa(end)
		}
		reply(out)
	case "DeleteSecret":
		s := secret()
		if s == nil {
			return
		}
		delete(f.secrets, s.name)
		reply(map[string]any{"ARN": arn(s.name), "Name": s.name, "DeletionDate": epoch(time.Now())})
	default:
		awsError(w, "UnknownOperationException", op)
	}
}

func startFakeAWS(t *testing.T) (*fakeSecretsManager, *AWS) {
	t.Helper()
	f := &fakeSecretsManager{secrets: map[string]*fakeAWSSecret{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	a, err := NewAWS(context.Background(), AWSOptions{
		Region:      "us-east-1",
		Endpoint:    srv.URL,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "test-secret-key", ""),
		ForceDelete: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f, a
}

func TestAWSSecretsManager(t *testing.T) {
	ctx := context.Background()
	f, a := startFakeAWS(t)
	if _, err := a.Get(ctx, "DEPLOY_KEY"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing secret: %v", err)
	}
	m1 := mustPut(t, ctx, a, "DEPLOY_KEY", "value-one")
	m2 := mustPut(t, ctx, a, "DEPLOY_KEY", "value-two")
	if m1.Version == "" || m1.Version == m2.Version {
		t.Fatalf("versions %q and %q", m1.Version, m2.Version)
	}
	got, err := a.Get(ctx, "DEPLOY_KEY")
	if err != nil || got.Value != "value-two" || got.Version != m2.Version {
		t.Fatalf("Get = %q %s, %v", got.Value, got.Version, err)
	}
	if old, err := a.GetVersion(ctx, "DEPLOY_KEY", m1.Version); err != nil || old.Value != "value-one" {
		t.Fatalf("GetVersion = %q, %v", old.Value, err)
	}
	if _, err := a.GetVersion(ctx, "DEPLOY_KEY", "no-such-version"); !errors.Is(err, ErrNoVersion) {
		t.Errorf("GetVersion of a missing version: %v", err)
	}
	for _, n := range []string{"A_KEY", "B_KEY", "C_KEY"} {
		mustPut(t, ctx, a, n, "v-"+n)
	}
	list, err := a.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list {
		names = append(names, m.Name)
	}
	if strings.Join(names, ",") != "A_KEY,B_KEY,C_KEY,DEPLOY_KEY" || list[3].Version != m2.Version {
		t.Errorf("List (over pages) = %+v", list)
	}
	if _, err := a.Restore(ctx, "DEPLOY_KEY", m1.Version); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Get(ctx, "DEPLOY_KEY"); got.Value != "value-one" || got.Version != m1.Version {
		t.Errorf("after Restore: %q %s", got.Value, got.Version)
	}
	f.mu.Lock()
	prev := f.secrets["hodei/DEPLOY_KEY"].withStage("AWSPREVIOUS")
	f.mu.Unlock()
	if prev != m2.Version {
		t.Errorf("AWSPREVIOUS is %q, want the version rolled back from (%s)", prev, m2.Version)
	}
	if err := a.Delete(ctx, "DEPLOY_KEY"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(ctx, "DEPLOY_KEY"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
}
