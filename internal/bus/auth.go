package bus

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/pki"
)

// InboxPrefix is the inbox prefix of agent id's connection. Replies to an
// agent (JetStream API answers, pulled dispatch messages, publish acks) go
// under it, and an agent may subscribe only there: with the shared _INBOX
// prefix, an agent could read what is delivered to another one.
func InboxPrefix(id string) string { return "_INBOX." + id }

// AgentOptions are the connection options every agent uses (its inbox
// prefix), with or without per-agent permissions.
func AgentOptions(id string) []nats.Option {
	return []nats.Option{nats.CustomInboxPrefix(InboxPrefix(id))}
}

// AgentPermissions are what agent id may do on NATS: publish its own status,
// logs and heartbeats, and its requests to the artifact service (package
// artifact, which decides what each may touch); create and pull from its own durable consumer on its
// own dispatch subject, and acknowledge what it pulled; receive replies on
// its own inbox. Nothing else: not another agent's subjects, not the
// streams' messages through the JetStream API, not the reports stream.
//
// For an external NATS server, give each agent a user with these
// permissions (for example with verify_and_map on its certificate).
func AgentPermissions(s Subjects, id string) *server.Permissions {
	durable := "agent-" + id
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			s.Status(id),
			s.Prefix + ".logs." + id + ".>",
			s.Heartbeat(id),
			s.Prefix + ".art." + id + ".>",
			"$JS.API.CONSUMER.CREATE." + StreamDispatch + "." + durable + "." + s.Dispatch(id),
			"$JS.API.CONSUMER.INFO." + StreamDispatch + "." + durable,
			"$JS.API.CONSUMER.MSG.NEXT." + StreamDispatch + "." + durable,
			"$JS.ACK." + StreamDispatch + "." + durable + ".>",
			"$JS.ACK.*.*." + StreamDispatch + "." + durable + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{InboxPrefix(id) + ".>"}},
	}
}

// Users of in-process connections.
const (
	serverUser  = "hodei-server"
	agentPrefix = "agent:"
)

// authenticator is the embedded server's authentication when TLS is on:
//
//   - a TLS client is who its verified certificate's URI SAN says (package
//     pki): spiffe://hodei/agent/ID gets AgentPermissions(ID),
//     spiffe://hodei/server/NAME gets everything, anything else is refused;
//   - an in-process connection (the server's own, and its local agents')
//     presents a user and password that only this process knows: a random
//     secret for the server, an HMAC of the agent id under it for agent ID.
type authenticator struct {
	subjects Subjects
	secret   []byte
}

func newAuthenticator(s Subjects) *authenticator {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return &authenticator{subjects: s, secret: b}
}

func (a *authenticator) password(user string) string {
	m := hmac.New(sha256.New, a.secret)
	m.Write([]byte(user))
	return hex.EncodeToString(m.Sum(nil))
}

// Check implements server.Authentication.
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return false
	}
	if o := c.GetOpts(); o != nil && o.Username != "" {
		// Passwords are for in-process connections only.
		if addr := c.RemoteAddress(); addr == nil || addr.Network() != "pipe" {
			return false
		}
		if subtle.ConstantTimeCompare([]byte(o.Password), []byte(a.password(o.Username))) != 1 {
			return false
		}
		if o.Username == serverUser {
			c.RegisterUser(&server.User{Username: serverUser})
			return true
		}
		if id, ok := strings.CutPrefix(o.Username, agentPrefix); ok && ValidToken(id) {
			c.RegisterUser(&server.User{Username: o.Username, Permissions: AgentPermissions(a.subjects, id)})
			return true
		}
		return false
	}
	st := c.GetTLSConnectionState()
	if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return false
	}
	kind, name, ok := pki.Identity(st.VerifiedChains[0][0])
	if !ok {
		return false
	}
	switch kind {
	case pki.KindServer:
		c.RegisterUser(&server.User{Username: "server:" + name})
		return true
	case pki.KindAgent:
		if !ValidToken(name) {
			return false
		}
		c.RegisterUser(&server.User{Username: agentPrefix + name, Permissions: AgentPermissions(a.subjects, name)})
		return true
	}
	return false
}
