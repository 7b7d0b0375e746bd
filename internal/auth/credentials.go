package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hodei-ci/hodei/internal/atomicfile"
)

// Credential is what the CLI keeps for one server: a Hodei token (an API
// token or the local admin token), or the tokens of an OIDC login.
type Credential struct {
	Token string `json:"token,omitempty"`

	Issuer       string    `json:"issuer,omitempty"`
	ClientID     string    `json:"client_id,omitempty"`
	ClientSecret string    `json:"client_secret,omitempty"`
	AccessToken  string    `json:"access_token,omitempty"`
	IDToken      string    `json:"id_token,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
}

// Bearer is the token the CLI sends: the Hodei token, else the OIDC access
// token if it is a JWT (Keycloak's are), else the ID token (issuers whose
// access tokens are opaque).
func (c Credential) Bearer() string {
	switch {
	case c.Token != "":
		return c.Token
	case looksLikeJWT(c.AccessToken):
		return c.AccessToken
	}
	return c.IDToken
}

// Expired reports whether an OIDC login's tokens have expired (with a
// margin of 30 seconds).
func (c Credential) Expired(now time.Time) bool {
	return c.Token == "" && !c.Expiry.IsZero() && now.Add(30*time.Second).After(c.Expiry)
}

// Refresh renews an expired OIDC login with its refresh token, and reports
// whether it did.
func (c *Credential) Refresh(ctx context.Context, hc *http.Client) (bool, error) {
	if !c.Expired(time.Now()) || c.RefreshToken == "" || c.Issuer == "" {
		return false, nil
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	ctx = oidc.ClientContext(ctx, hc)
	p, err := oidc.NewProvider(ctx, c.Issuer)
	if err != nil {
		return false, fmt.Errorf("refresh login: %w", err)
	}
	cfg := oauth2.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, Endpoint: p.Endpoint()}
	tok, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: c.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return false, fmt.Errorf("refresh login (run \"hodei login\" again): %w", err)
	}
	c.setToken(tok)
	return true, nil
}

func (c *Credential) setToken(tok *oauth2.Token) {
	c.AccessToken, c.Expiry = tok.AccessToken, tok.Expiry
	if tok.RefreshToken != "" {
		c.RefreshToken = tok.RefreshToken
	}
	if id, ok := tok.Extra("id_token").(string); ok && id != "" {
		c.IDToken = id
	}
}

// Credentials are the CLI's saved credentials, by server URL.
type Credentials struct {
	Servers map[string]Credential `json:"servers"`
}

// CredentialsPath is where the CLI keeps credentials: $HODEI_CREDENTIALS,
// else hodei/credentials.json in the user's config directory
// (~/.config/hodei/credentials.json on Linux).
func CredentialsPath() (string, error) {
	if p := os.Getenv("HODEI_CREDENTIALS"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("credentials: %w", err)
	}
	return filepath.Join(dir, "hodei", "credentials.json"), nil
}

// ServerKey normalises a server URL for use as a key.
func ServerKey(server string) string {
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil {
		return server
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	return u.String()
}

// LoadCredentials reads the credentials file; a missing file is empty.
func LoadCredentials(path string) (*Credentials, error) {
	c := &Credentials{Servers: map[string]Credential{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("credentials file %s: %w", path, err)
	}
	if c.Servers == nil {
		c.Servers = map[string]Credential{}
	}
	return c, nil
}

// Save writes the file, readable by its owner only.
func (c *Credentials) Save(path string) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}

// SaveCredential stores cred for server in the file at path.
func SaveCredential(path, server string, cred Credential) error {
	c, err := LoadCredentials(path)
	if err != nil {
		return err
	}
	c.Servers[ServerKey(server)] = cred
	return c.Save(path)
}
