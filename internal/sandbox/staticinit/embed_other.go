//go:build !amd64

package staticinit

// program_ is nil: no init for this architecture (the sandbox keeps the
// shell init).
var program_ []byte
