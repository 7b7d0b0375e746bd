package wire

import "net/http"

// Code is a stable error code of the API: the code field of an Error.
type Code string

// Error codes. ErrorCodes says the HTTP status of each and when it is
// answered.
const (
	CodeBadRequest      Code = "bad_request"
	CodeUnauthenticated Code = "unauthenticated"
	CodeForbidden       Code = "forbidden"
	CodeCSRF            Code = "csrf_failed"
	CodeInvalidPipeline Code = "invalid_pipeline"
	CodeInvalidInputs   Code = "invalid_inputs"
	CodeNotFound        Code = "not_found"
	CodeNoSecrets       Code = "secrets_not_configured"
	CodeMethod          Code = "method_not_allowed"
	CodeRunFinal        Code = "run_final"
	CodeNotWaiting      Code = "not_waiting"
	CodeConflict        Code = "conflict"
	CodeRevealDisabled  Code = "reveal_disabled"
	CodeReadOnly        Code = "read_only"
	CodeRotationFailed  Code = "rotation_failed"
	CodeTooLarge        Code = "too_large"
	CodeUnsupported     Code = "unsupported_media_type"
	CodeTooManyRequests Code = "too_many_requests"
	CodeRange           Code = "range_not_satisfiable"
	CodeUnavailable     Code = "unavailable"
	CodeInternal        Code = "internal"
	CodeBadSignature    Code = "bad_signature"
	CodeFetchFailed     Code = "fetch_failed"
)

// ErrorCode is one entry of the error catalogue.
type ErrorCode struct {
	Code Code
	// Status is the HTTP status every answer with Code has.
	Status int
	// When says in which case the API answers Code, for the reader of
	// docs/api.md.
	When string
}

// ErrorCodes is the catalogue of the API's errors: every code, its HTTP
// status and when it is answered, in the order of docs/api.md, whose table
// of errors lists the same rows (a test checks both ways).
var ErrorCodes = []ErrorCode{
	{CodeBadRequest, http.StatusBadRequest, "a malformed query or body"},
	{CodeUnauthenticated, http.StatusUnauthorized, "no credentials, or credentials that do not check out (with `WWW-Authenticate: Bearer`)"},
	{CodeForbidden, http.StatusForbidden, "the Cedar policies do not permit the action (see [security](security.md))"},
	{CodeCSRF, http.StatusForbidden, "a state change sent with the web UI's session cookie but without its `X-CSRF-Token` header, or with another (see [web UI](ui.md))"},
	{CodeInvalidPipeline, http.StatusBadRequest, "the pipeline file is invalid; `details` lists every problem with its position"},
	{CodeInvalidInputs, http.StatusBadRequest, "the inputs given for the pipeline's `inputs:` are not what it declares (unknown, missing while required, not one of a choice's options, not a boolean or a number); `details` has one entry per problem, its `field` being `inputs.NAME`"},
	{CodeNotFound, http.StatusNotFound, "no such run, job, secret or endpoint"},
	{CodeNoSecrets, http.StatusNotFound, "a secrets endpoint on a server without a secrets backend"},
	{CodeMethod, http.StatusMethodNotAllowed, "with an `Allow` header"},
	{CodeRunFinal, http.StatusConflict, "canceling a run that has already ended, or deciding on a job of one"},
	{CodeNotWaiting, http.StatusConflict, "approving or rejecting a job that does not wait for an approval (it has no environment, or was decided, timed out or canceled)"},
	{CodeConflict, http.StatusConflict, "creating an API token with the name of an existing one"},
	{CodeRevealDisabled, http.StatusForbidden, "revealing a secret on a server started without `--secrets-allow-reveal`"},
	{CodeReadOnly, http.StatusConflict, "writing a secret to a read-only secrets backend"},
	{CodeRotationFailed, http.StatusConflict, "a secret's rotation failed and was rolled back"},
	{CodeTooLarge, http.StatusRequestEntityTooLarge, "a body over its limit; for a submission, a pipeline file over the server's `--max-pipeline-bytes` (1 MiB by default), and the message names the limit"},
	{CodeUnsupported, http.StatusUnsupportedMediaType, "a body that is neither YAML, text nor JSON"},
	{CodeTooManyRequests, http.StatusTooManyRequests, "too many failed authentications from the caller's address (retry after `Retry-After` seconds; see [hardening](#hardening)), or a submission of a tenant that has as many runs that have not ended as the server takes (`hodei server --max-active-runs`, 10,000 by default; `Retry-After: 30`)"},
	{CodeRange, http.StatusRequestedRangeNotSatisfiable, "a `Range` of an artifact that is not one range of bytes inside it (with `Content-Range: bytes */SIZE`)"},
	{CodeUnavailable, http.StatusServiceUnavailable, "the orchestrator's intake is full or it is stopping (retry after `Retry-After` seconds), or, with several servers, no server has led for the last 10 seconds (a failover: `Retry-After: 2`, any server may be asked again), or the store cannot answer a read or take a write now (a database restarting or failing over: `Retry-After: 2`; a submission with an `Idempotency-Key` may be sent again as it is), or the identity provider, the authorizer, the secrets backend or the audit trail cannot answer"},
	{CodeInternal, http.StatusInternalServerError, "a bug (panics are caught and answered this way)"},
	{CodeBadSignature, http.StatusUnauthorized, "a webhook whose signature (or GitLab token) does not match the repository's webhook secret; nothing is run"},
	{CodeFetchFailed, http.StatusBadGateway, "a webhook's commit cannot be fetched from the repository's git server (the forge may deliver it again)"},
}

// Status returns the HTTP status of c; 500 for a code missing from
// ErrorCodes.
func (c Code) Status() int {
	for _, e := range ErrorCodes {
		if e.Code == c {
			return e.Status
		}
	}
	return http.StatusInternalServerError
}
