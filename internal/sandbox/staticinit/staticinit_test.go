package staticinit

import (
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCommittedFilesAreWhatBuildMakes regenerates the init and its listing
// and compares them with the committed files (go generate must have run
// after every change to program.go), and checks that the binary embeds
// the one of its architecture.
func TestCommittedFilesAreWhatBuildMakes(t *testing.T) {
	for _, arch := range []string{"amd64"} {
		prog, err := Build(arch)
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile("init_linux_" + arch)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(prog, committed) {
			t.Errorf("init_linux_%s is not what Build makes: run go generate ./internal/sandbox/staticinit", arch)
		}
		lst, err := Listing(arch)
		if err != nil {
			t.Fatal(err)
		}
		committedLst, err := os.ReadFile("init_linux_" + arch + ".lst")
		if err != nil {
			t.Fatal(err)
		}
		if lst != string(committedLst) {
			t.Errorf("init_linux_%s.lst is not what Listing makes: run go generate ./internal/sandbox/staticinit", arch)
		}
		if arch == runtime.GOARCH && !bytes.Equal(Program(), committed) {
			t.Errorf("Program() is not init_linux_%s", arch)
		}
	}
	if _, err := Build("mips"); err == nil {
		t.Error("Build(mips) made an init")
	}
}

// TestTheExecutableIsStatic reads the init with debug/elf: an executable
// of the right machine, entered at its first instruction, with one
// loadable segment that is not writable, a stack that is not executable,
// and no interpreter (no loader, no libc).
func TestTheExecutableIsStatic(t *testing.T) {
	prog, err := Build("amd64")
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(prog))
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != elf.ET_EXEC || f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		t.Fatalf("type %v machine %v class %v", f.Type, f.Machine, f.Class)
	}
	if f.Entry != loadAddr+hdrs {
		t.Errorf("entry %#x, want %#x", f.Entry, loadAddr+hdrs)
	}
	var loads, stacks int
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			loads++
			if p.Flags != elf.PF_R|elf.PF_X || p.Filesz != uint64(len(prog)) || p.Off != 0 {
				t.Errorf("PT_LOAD %+v", p.ProgHeader)
			}
		case elf.PT_GNU_STACK:
			stacks++
			if p.Flags&elf.PF_X != 0 {
				t.Errorf("executable stack: %v", p.Flags)
			}
		case elf.PT_INTERP:
			t.Error("the init has an interpreter")
		}
	}
	if loads != 1 || stacks != 1 {
		t.Errorf("%d PT_LOAD and %d PT_GNU_STACK, want 1 each", loads, stacks)
	}
}

// TestOpenSealsTheProgram checks that the memfd holds the program and
// that neither its bytes, its size nor its execute bits can be changed.
func TestOpenSealsTheProgram(t *testing.T) {
	f, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
	if err != nil || !bytes.Equal(got, Program()) {
		t.Fatalf("the memfd holds %d bytes (%v), want the %d of the program", len(got), err, len(Program()))
	}
	if _, err := f.WriteAt([]byte{0xcc}, 200); !errors.Is(err, unix.EPERM) {
		t.Errorf("write: %v, want EPERM", err)
	}
	if err := f.Truncate(0); !errors.Is(err, unix.EPERM) {
		t.Errorf("truncate: %v, want EPERM", err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("mode %v (%v), want 0555", fi.Mode(), err)
	}
	// F_SEAL_EXEC keeps the execute bits (write bits would not matter:
	// the file is sealed against writes).
	if err := f.Chmod(0o444); !errors.Is(err, unix.EPERM) {
		t.Errorf("chmod 0444: %v, want EPERM", err)
	}
}

// TestInitSaysReadyAndEndsWithItsHold runs the init (outside any PID
// namespace: nothing signals it, so it never passes a signal on) from its
// memfd as the sandbox does: it writes its byte on fd 4, closes it, and
// exits 0 once fd 3 reaches its end, not before.
func TestInitSaysReadyAndEndsWithItsHold(t *testing.T) {
	f, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	holdR, holdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/fd/5")
	cmd.ExtraFiles = []*os.File{holdR, readyW, f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	holdR.Close()
	readyW.Close()
	ready, err := io.ReadAll(readyR) // the init closes fd 4 after its byte
	if err != nil || len(ready) != 1 {
		t.Fatalf("fd 4 gave %q (%v), want one byte", ready, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if _, err := holdW.Write([]byte("bytes on fd 3 are ignored\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the init exited (%v) while fd 3 was open", err)
	case <-time.After(200 * time.Millisecond):
		// A failure bound, not a synchronisation: the init must still be
		// waiting.
	}
	holdW.Close()
	if err := <-done; err != nil {
		t.Fatalf("the init ended with %v, want exit 0", err)
	}
}
