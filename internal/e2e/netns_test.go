//go:build chaos

package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hodei-ci/hodei/internal/partitiontest"
)

// netNS is a network namespace of a test with only its loopback: a process
// started in it reaches nothing of the machine but what the test forwards
// into it (forwarders listening inside, dialing outside), so the test can
// cut one process off one service while the others still reach it. It
// needs root (unshare --net).
type netNS struct {
	holder *proc  // keeps the namespace alive
	path   string // /proc/PID/ns/net of the holder
}

func newNetNS(t *testing.T, name string) *netNS {
	t.Helper()
	p := startCmd(t, name+"-netns.log", exec.Command("unshare", "--net", "sleep", "infinity"))
	n := &netNS{holder: p, path: fmt.Sprintf("/proc/%d/ns/net", p.cmd.Process.Pid)}
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	// unshare is another process: its namespace is new once it has
	// unshared (then it execs sleep), which only its /proc entry tells.
	eventually(t, 10*time.Second, name+"'s network namespace", func() (bool, error) {
		select {
		case <-p.done:
			t.Fatalf("unshare --net exited (root needed): see %s", p.log)
		default:
		}
		ns, err := os.Readlink(n.path)
		return err == nil && ns != self, err
	})
	if out, err := exec.Command("nsenter", "--net="+n.path, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("loopback up in %s: %v\n%s", name, err, out)
	}
	return n
}

// command is name with args run inside the namespace.
func (n *netNS) command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + n.path, "--", name}, args...)...)
}

// do runs f on an OS thread moved into the namespace: the sockets f makes
// belong to it. The thread comes back to the test's namespace after f (or
// is thrown away with its goroutine if it cannot).
func (n *netNS) do(f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open(n.path)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", n.path, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Locked and never unlocked: Go ends the thread with the goroutine.
		return errors.Join(ferr, fmt.Errorf("setns back: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// into forwards addr inside the namespace to the same addr outside.
func (n *netNS) into(t *testing.T, addr string) *partitiontest.Forwarder {
	t.Helper()
	var l net.Listener
	if err := n.do(func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listen on %s in the namespace: %v", addr, err)
	}
	return partitiontest.New(t, l, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) })
}

// out forwards addr outside to the same addr inside the namespace (where a
// process of it listens).
func (n *netNS) out(t *testing.T, addr string) *partitiontest.Forwarder {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	return partitiontest.New(t, l, func() (c net.Conn, err error) {
		err = n.do(func() (err error) { c, err = net.DialTimeout("tcp", addr, 5*time.Second); return err })
		return c, err
	})
}
