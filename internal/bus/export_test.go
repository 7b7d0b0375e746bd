package bus

// ServerCredentials returns the user and password of e's in-process server
// connections, for tests that present them where they must be refused.
func ServerCredentials(e *Embedded) (user, password string) {
	return serverUser, e.auth.password(serverUser)
}
