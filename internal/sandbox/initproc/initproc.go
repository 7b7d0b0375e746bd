// Package initproc is the sandbox's init (see package sandbox): the code a
// re-executed binary runs, in the new namespaces, when the environment
// marker is set. It depends on a handful of standard packages only, so that
// Go initialises it (and its init function takes over the process) before
// the heavy packages of the binary: a binary's packages are initialised in
// import-path order as soon as their dependencies are, and a dependency on
// strings, path/filepath or encoding/json would put this package after
// nearly all of them (about 3 ms of CPU per step with the hodei binary).
package initproc

import (
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"syscall"
)

// Marker is the environment variable that makes a re-executed binary the
// sandbox's init.
const Marker = "HODEI_SANDBOX_INIT"

func init() {
	if os.Getenv(Marker) == "1" {
		os.Exit(run())
	}
}

// Spec is what the caller hands the init on fd 3 (see sandbox.Spec).
type Spec struct {
	Script, Workspace, Tmp string
	Env, Hide              []string
	UID, GID               int
	// UserNS says that the init runs in a user namespace as the caller's
	// uid mapped to 0; the shell then gets a nested one.
	UserNS           bool
	HostUID, HostGID int
}

// Status is how the step's shell ended: its exit code (-1 if a signal
// killed it), the signal, or why the sandbox could not run it.
type Status struct {
	Code   int
	Signal syscall.Signal
	Err    string
}

// Encode writes s as length-prefixed fields.
func (s *Spec) Encode() []byte {
	var b []byte
	str := func(v string) { b = append(strconv.AppendInt(b, int64(len(v)), 10), ':'); b = append(b, v...) }
	num := func(v int) { str(strconv.Itoa(v)) }
	list := func(v []string) {
		num(len(v))
		for _, x := range v {
			str(x)
		}
	}
	str(s.Script)
	str(s.Workspace)
	str(s.Tmp)
	list(s.Env)
	list(s.Hide)
	num(s.UID)
	num(s.GID)
	userns := 0
	if s.UserNS {
		userns = 1
	}
	num(userns)
	num(s.HostUID)
	num(s.HostGID)
	return b
}

var errBadSpec = errors.New("bad spec")

// Decode reads what Encode wrote.
func (s *Spec) Decode(b []byte) error {
	str := func() (string, error) {
		i := slices.Index(b, ':')
		if i < 0 {
			return "", errBadSpec
		}
		n, err := strconv.Atoi(string(b[:i]))
		if err != nil || n < 0 || i+1+n > len(b) {
			return "", errBadSpec
		}
		v := string(b[i+1 : i+1+n])
		b = b[i+1+n:]
		return v, nil
	}
	num := func() (int, error) {
		v, err := str()
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(v)
	}
	list := func() ([]string, error) {
		n, err := num()
		if err != nil || n < 0 || n > len(b) {
			return nil, errBadSpec
		}
		out := make([]string, n)
		for i := range out {
			if out[i], err = str(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	var err error
	var userns int
	for _, f := range []func() error{
		func() error { s.Script, err = str(); return err },
		func() error { s.Workspace, err = str(); return err },
		func() error { s.Tmp, err = str(); return err },
		func() error { s.Env, err = list(); return err },
		func() error { s.Hide, err = list(); return err },
		func() error { s.UID, err = num(); return err },
		func() error { s.GID, err = num(); return err },
		func() error { userns, err = num(); return err },
		func() error { s.HostUID, err = num(); return err },
		func() error { s.HostGID, err = num(); return err },
	} {
		if err := f(); err != nil {
			return err
		}
	}
	s.UserNS = userns == 1
	if len(b) != 0 {
		return errBadSpec
	}
	return nil
}

// EncodeStatus writes st as "code signal message".
func EncodeStatus(st Status) []byte {
	b := strconv.AppendInt(nil, int64(st.Code), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(st.Signal), 10)
	b = append(b, ' ')
	return append(b, st.Err...)
}

// DecodeStatus reads what EncodeStatus wrote.
func DecodeStatus(b []byte) (Status, error) {
	var st Status
	var f [2]int
	for i := range f {
		j := slices.Index(b, ' ')
		if j < 0 {
			return st, errors.New("bad status")
		}
		n, err := strconv.Atoi(string(b[:j]))
		if err != nil {
			return st, errors.New("bad status")
		}
		f[i], b = n, b[j+1:]
	}
	return Status{Code: f[0], Signal: syscall.Signal(f[1]), Err: string(b)}, nil
}

// run is the init: fd 3 carries the spec (its EOF is the start gate), fd 4
// takes the Status, fds 1 and 2 are the step's output.
func run() int {
	specR := os.NewFile(3, "spec")
	statW := os.NewFile(4, "status")
	report := func(st Status) int {
		_, _ = statW.Write(EncodeStatus(st))
		statW.Close()
		return 0
	}
	b, err := io.ReadAll(specR)
	specR.Close()
	if err != nil {
		return report(Status{Code: -1, Err: "read spec: " + err.Error()})
	}
	if len(b) == 0 {
		return 1 // the caller gave up before opening the gate
	}
	var s Spec
	if err := s.Decode(b); err != nil {
		return report(Status{Code: -1, Err: err.Error()})
	}
	if err := setup(&s); err != nil {
		return report(Status{Code: -1, Err: err.Error()})
	}
	st, err := runShell(&s)
	if err != nil {
		return report(Status{Code: -1, Err: err.Error()})
	}
	return report(st)
}

// wrap prefixes an error with what failed.
func wrap(what string, err error) error {
	return errors.New(what + ": " + err.Error())
}
