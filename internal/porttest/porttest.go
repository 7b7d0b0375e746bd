// Package porttest draws loopback ports for tests that start processes
// listening on an address given in advance (the e2e and deploy tests).
package porttest

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreeAddr returns a loopback address with a port that is free now and
// that the kernel will not hand out on its own: the port is drawn at random
// below the ephemeral range (ip_local_port_range), so an outgoing connection
// of another test package cannot take it between this check and the bind of
// the process it is meant for (a port from "127.0.0.1:0" lies inside that
// range, and such a collision failed CI once). Only another explicit draw
// can collide, one chance in thousands, and processes that restart on the
// same port keep it the same way.
func FreeAddr(t *testing.T) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 12000 {
				low = n
			}
		}
	}
	for range 100 {
		port := 10000 + rand.IntN(low-10000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		return l.Addr().String()
	}
	t.Fatal("no free port below the ephemeral range after 100 draws")
	return ""
}
