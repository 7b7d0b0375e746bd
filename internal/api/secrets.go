package api

// Secrets endpoints (see docs/security.md, Secrets):
//
//	GET    /api/v1/secrets                  the secrets of a tenant: names, versions, rotation; never values
//	GET    /api/v1/secrets/{name}           one secret, without its value
//	PUT    /api/v1/secrets/{name}           store a new version: JSON {"value", "rotation": {"period", "window"}}
//	DELETE /api/v1/secrets/{name}           delete a secret and all its versions
//	POST   /api/v1/secrets/{name}/rotate    rotate now (a generated value; rolled back if its hook fails)
//	POST   /api/v1/secrets/{name}/reveal    the current value, only if the server allows it
//
// The tenant is ?tenant=, else the caller's, else the default one. A value
// is answered only by reveal, which is a POST (so that it needs the
// permission to manage secrets, and is never cached) and is off unless the
// server was started with --secrets-allow-reveal. Request bodies are never
// logged, and error messages name secrets, never values.

import (
	"errors"
	"net/http"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/secrets"
)

// maxSecretBody bounds a PUT body: the largest value, JSON-escaped, and a
// policy.
const maxSecretBody = 6*secrets.MaxValueLen + 4096

func (a *api) secretRoutes(mux *http.ServeMux) {
	route(mux, "/api/v1/secrets", map[string]http.HandlerFunc{"GET": a.listSecrets})
	route(mux, "/api/v1/secrets/{name}", map[string]http.HandlerFunc{"GET": a.getSecret, "PUT": a.putSecret, "DELETE": a.deleteSecret})
	route(mux, "/api/v1/secrets/{name}/rotate", map[string]http.HandlerFunc{"POST": a.rotateSecret})
	route(mux, "/api/v1/secrets/{name}/reveal", map[string]http.HandlerFunc{"POST": a.revealSecret})
}

// secretScope returns the service and the tenant of a secrets request, or
// answers the error.
func (a *api) secretScope(w http.ResponseWriter, r *http.Request) (*secrets.Service, string, bool) {
	if a.d.Secrets == nil {
		writeError(w, wire.CodeNoSecrets, "this server has no secrets backend")
		return nil, "", false
	}
	tenant := r.URL.Query().Get("tenant")
	if tenant == "" {
		if p, ok := auth.FromContext(r.Context()); ok {
			tenant = p.Tenant
		}
	}
	if tenant == "" {
		tenant = secrets.DefaultTenant
	}
	if !secrets.ValidTenant(tenant) {
		writeError(w, wire.CodeBadRequest, "invalid tenant "+tenant)
		return nil, "", false
	}
	if name := r.PathValue("name"); name != "" && !secrets.ValidName(name) {
		writeError(w, wire.CodeBadRequest,
			"invalid secret name: use letters, digits and _, not starting with a digit (it becomes an environment variable)")
		return nil, "", false
	}
	return a.d.Secrets, tenant, true
}

// secretError answers an error of the secrets service. Its messages name
// secrets, never values.
func (a *api) secretError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		writeError(w, wire.CodeNotFound, err.Error())
	case errors.Is(err, secrets.ErrInvalidName), errors.Is(err, secrets.ErrInvalidPolicy):
		writeError(w, wire.CodeBadRequest, err.Error())
	case errors.Is(err, secrets.ErrRevealDisabled):
		writeError(w, wire.CodeRevealDisabled, err.Error())
	case errors.Is(err, secrets.ErrReadOnly):
		writeError(w, wire.CodeReadOnly, "the secrets backend of this server is read-only")
	case errors.Is(err, secrets.ErrRotationFailed):
		writeError(w, wire.CodeRotationFailed, err.Error())
	case unavailable(w, err):
	default:
		a.log.Warn("secrets backend", "request_id", RequestID(r.Context()), "err", err)
		writeError(w, wire.CodeUnavailable, "secrets backend: "+err.Error())
	}
}

func (a *api) listSecrets(w http.ResponseWriter, r *http.Request) {
	svc, tenant, ok := a.secretScope(w, r)
	if !ok {
		return
	}
	list, err := svc.List(r.Context(), tenant)
	if err != nil {
		a.secretError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, secrets.List{Secrets: list})
}

func (a *api) getSecret(w http.ResponseWriter, r *http.Request) {
	svc, tenant, ok := a.secretScope(w, r)
	if !ok {
		return
	}
	info, err := svc.Info(r.Context(), tenant, r.PathValue("name"))
	if err != nil {
		a.secretError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (a *api) putSecret(w http.ResponseWriter, r *http.Request) {
	svc, tenant, ok := a.secretScope(w, r)
	if !ok {
		return
	}
	var req secrets.PutRequest
	if err := readJSON(w, r, maxSecretBody, &req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			bodyError(w, err)
			return
		}
		// The decoder's message may quote the body: it is not repeated.
		writeError(w, wire.CodeBadRequest,
			`the body must be JSON {"value": "...", "rotation": {"period": "720h", "window": "1h"}}`)
		return
	}
	if req.Value == "" {
		writeError(w, wire.CodeBadRequest, "the value is empty")
		return
	}
	if len(req.Value) > secrets.MaxValueLen {
		writeError(w, wire.CodeTooLarge, "the value is longer than 64 KiB")
		return
	}
	var policy *secrets.Policy
	if req.Rotation != nil {
		p, err := req.Rotation.Parse()
		if err != nil {
			writeError(w, wire.CodeBadRequest, err.Error())
			return
		}
		policy = &p
	}
	info, err := svc.Put(r.Context(), tenant, r.PathValue("name"), req.Value, policy)
	if err != nil {
		a.secretError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (a *api) deleteSecret(w http.ResponseWriter, r *http.Request) {
	svc, tenant, ok := a.secretScope(w, r)
	if !ok {
		return
	}
	if err := svc.Delete(r.Context(), tenant, r.PathValue("name")); err != nil {
		a.secretError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) rotateSecret(w http.ResponseWriter, r *http.Request) {
	svc, tenant, ok := a.secretScope(w, r)
	if !ok {
		return
	}
	info, err := svc.Rotate(r.Context(), tenant, r.PathValue("name"))
	if err != nil {
		a.secretError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (a *api) revealSecret(w http.ResponseWriter, r *http.Request) {
	svc, tenant, ok := a.secretScope(w, r)
	if !ok {
		return
	}
	v, err := svc.Reveal(r.Context(), tenant, r.PathValue("name"))
	if err != nil {
		a.secretError(w, r, err)
		return
	}
	a.log.Info("secret revealed", "request_id", RequestID(r.Context()), "tenant", tenant, "secret", v.Name, "version", v.Version)
	writeJSON(w, http.StatusOK, v)
}
