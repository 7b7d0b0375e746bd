package oidctest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// Resign forges tok as someone without the provider's key can: its header
// (and so the provider's key id) kept, its claims changed by claims when
// not nil, signed again with a new RSA key. A verifier must refuse it.
func Resign(t testing.TB, tok string, claims func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if claims != nil {
		raw, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		claims(c)
		raw, _ = json.Marshal(c)
		parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Tamper makes a developer an admin in tok's payload and keeps the
// provider's signature, which then no longer matches. A verifier must
// refuse it.
func Tamper(t testing.TB, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || !strings.Contains(string(raw), `"developer"`) {
		t.Fatalf("payload %s: %v", raw, err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), `"developer"`, `"admin"`, 1)))
	return strings.Join(parts, ".")
}
