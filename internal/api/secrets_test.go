package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/secrets"
)

const apiSecretValue = "tr0ub4dor&3-value"

func secretsAPI(t *testing.T, allowReveal bool) (*httptest.Server, *bytes.Buffer, *secrets.Store) {
	t.Helper()
	st, err := secrets.OpenStore(secrets.StoreOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rot, err := secrets.NewRotator(st, secrets.RotatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	h := New(Deps{
		Secrets: &secrets.Service{Provider: st, Rotator: rot, AllowReveal: allowReveal},
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, &logs, st
}

func call(t *testing.T, method, url, body string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), resp.Header
}

func TestSecretsAPINeverAnswersValuesUnlessRevealed(t *testing.T) {
	t.Parallel()
	srv, logs, st := secretsAPI(t, false)
	base := srv.URL + "/api/v1/secrets"
	code, body, _ := call(t, "PUT", base+"/DB_PASSWORD", `{"value":"`+apiSecretValue+`","rotation":{"period":"720h","window":"2h"}}`)
	if code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	var info secrets.Info
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "DB_PASSWORD" || info.Tenant != "default" || info.Version != "1" || info.Rotation == nil || info.Rotation.Period != "720h0m0s" || info.Rotation.Window != "2h0m0s" {
		t.Errorf("PUT answered %+v", info)
	}
	for _, u := range []string{base, base + "/DB_PASSWORD"} {
		code, body, hdr := call(t, "GET", u, "")
		if code != 200 || !strings.Contains(body, "DB_PASSWORD") {
			t.Errorf("GET %s: %d %s", u, code, body)
		}
		if strings.Contains(body, apiSecretValue) {
			t.Errorf("GET %s answers the value", u)
		}
		if hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: Cache-Control %q", u, hdr.Get("Cache-Control"))
		}
	}
	code, body, _ = call(t, "POST", base+"/DB_PASSWORD/reveal", "")
	if code != 403 || !strings.Contains(body, string(wire.CodeRevealDisabled)) || strings.Contains(body, apiSecretValue) {
		t.Errorf("reveal on a server that does not allow it: %d %s", code, body)
	}
	code, body, _ = call(t, "GET", base+"/DB_PASSWORD?reveal=1", "")
	if strings.Contains(body, apiSecretValue) {
		t.Errorf("GET ?reveal=1 answers the value: %d", code)
	}
	code, body, _ = call(t, "POST", base+"/DB_PASSWORD/rotate", "")
	if code != 200 || !strings.Contains(body, `"version":"2"`) || !strings.Contains(body, `"previous_version":"1"`) {
		t.Errorf("rotate: %d %s", code, body)
	}
	if cur, _ := st.Get(context.Background(), "DB_PASSWORD"); cur.Value == apiSecretValue {
		t.Error("rotate did not change the value")
	}
	if code, body, _ := call(t, "DELETE", base+"/DB_PASSWORD", ""); code != 204 {
		t.Errorf("DELETE: %d %s", code, body)
	}
	if code, _, _ := call(t, "GET", base+"/DB_PASSWORD", ""); code != 404 {
		t.Errorf("GET after DELETE: %d", code)
	}
	if strings.Contains(logs.String(), apiSecretValue) {
		t.Errorf("the value is in the server's log:\n%s", logs.String())
	}
}

func TestSecretsAPIRequests(t *testing.T) {
	t.Parallel()
	srv, logs, _ := secretsAPI(t, true)
	base := srv.URL + "/api/v1/secrets"
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"PUT", "/1BAD", `{"value":"x"}`, 400, "invalid secret name"},
		{"PUT", "/GOOD", `{"value":""}`, 400, "the value is empty"},
		{"PUT", "/GOOD", `{"value": "` + apiSecretValue + `", "extra": 1}`, 400, "the body must be JSON"},
		{"PUT", "/GOOD", `{"value": "` + apiSecretValue + `"`, 400, "the body must be JSON"},
		{"PUT", "/GOOD", `{"value":"` + apiSecretValue + `","rotation":{"period":"1h","window":"2h"}}`, 400, "must be shorter than the period"},
		{"PUT", "/GOOD", `{"value":"` + apiSecretValue + `","rotation":{"period":"soon"}}`, 400, "rotation period"},
		{"POST", "/MISSING/rotate", "", 404, "secret MISSING: secret not found"},
		{"GET", "/GOOD", "", 404, "not found"},
		{"PATCH", "/GOOD", "", 405, "not allowed"},
	} {
		code, body, _ := call(t, tc.method, base+tc.path, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s %s: %d %s; want %d %q", tc.method, tc.path, tc.body, code, body, tc.code, tc.want)
		}
		if strings.Contains(body, apiSecretValue) {
			t.Errorf("%s %s: the answer holds the value: %s", tc.method, tc.path, body)
		}
	}
	// Tenants do not see each other's secrets; reveal (allowed here)
	// answers the value of the tenant asked for.
	if code, body, _ := call(t, "PUT", base+"/TOKEN?tenant=team-a", `{"value":"a-token-value"}`); code != 200 {
		t.Fatalf("PUT in team-a: %d %s", code, body)
	}
	if code, body, _ := call(t, "PUT", base+"/TOKEN", `{"value":"default-token-value"}`); code != 200 {
		t.Fatalf("PUT in default: %d %s", code, body)
	}
	code, body, _ := call(t, "GET", base+"?tenant=team-b", "")
	if code != 200 || strings.Contains(body, "TOKEN") {
		t.Errorf("team-b lists %s", body)
	}
	code, body, _ = call(t, "POST", base+"/TOKEN/reveal?tenant=team-a", "")
	if code != 200 || !strings.Contains(body, `"value":"a-token-value"`) || !strings.Contains(body, `"tenant":"team-a"`) {
		t.Errorf("reveal in team-a: %d %s", code, body)
	}
	code, body, _ = call(t, "POST", base+"/TOKEN/reveal", "")
	if code != 200 || !strings.Contains(body, `"value":"default-token-value"`) {
		t.Errorf("reveal in default: %d %s", code, body)
	}
	if code, _, _ := call(t, "GET", base+"/TOKEN?tenant=team-b", ""); code != 404 {
		t.Errorf("team-b sees team-a's TOKEN: %d", code)
	}
	for _, v := range []string{apiSecretValue, "a-token-value", "default-token-value"} {
		if strings.Contains(logs.String(), v) {
			t.Errorf("the value %q is in the server's log", v)
		}
	}
}

func TestSecretsAPIWithoutBackend(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(New(Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()
	if code, body, _ := call(t, "GET", srv.URL+"/api/v1/secrets", ""); code != 404 || !strings.Contains(body, string(wire.CodeNoSecrets)) {
		t.Errorf("%d %s", code, body)
	}
}
