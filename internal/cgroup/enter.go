package cgroup

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
)

// Entry is a thread's stay in a group: the processes the thread starts
// between Enter and Leave are born in the group, so that none of them can
// fork before it is there, and no process has to be held at a gate until
// it has been moved in.
//
// On cgroup v1 the thread itself moves into the group (v1 places threads
// one by one) and back out at Leave. On v2, where a thread cannot leave
// its process's group, it stays where it is and Attr asks clone3 to place
// each child in the group at its birth (CLONE_INTO_CGROUP).
type Entry struct {
	g    *Group
	tid  string
	back []int // v1: the tasks file of the thread's own group, by hierarchy
	dir  int   // v2: the group's directory, for clone3; -1 on v1
}

// Enter moves the calling thread into g (see Entry). The caller must be
// locked to its thread (runtime.LockOSThread) until Leave has returned, and
// must not let the group be killed in between: on v1 the group lists the
// caller's own process while the thread is in it.
func (g *Group) Enter() (*Entry, error) {
	e := &Entry{g: g, tid: strconv.Itoa(syscall.Gettid()), dir: -1}
	if g.m.version == V2 {
		fd, err := syscall.Open(g.dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: open: %w", g.name, err)
		}
		e.dir = fd
		return e, nil
	}
	// The freezer first, as in Add. Two controllers of one hierarchy
	// share a directory: it is written once.
	seen := map[string]bool{}
	for _, c := range v1Wanted {
		d := g.dirs[c]
		if !g.placesIn(c) || seen[d] {
			continue
		}
		seen[d] = true
		// The thread's way back, opened now: a thread that confines
		// itself before it leaves (Landlock) can still write to it.
		fd, err := openFile(filepath.Join(filepath.Dir(g.m.v1[c]), "tasks"), syscall.O_WRONLY)
		if err == nil {
			e.back = append(e.back, fd)
			err = writeFile(d, "tasks", e.tid)
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("cgroup %s: enter %s: %w", g.name, c, err), e.Leave())
		}
	}
	return e, nil
}

// Attr makes a process started with attr born in the group (on v2; on v1
// the thread that starts it is in the group already).
func (e *Entry) Attr(attr *syscall.SysProcAttr) {
	if e.dir >= 0 {
		attr.UseCgroupFD = true
		attr.CgroupFD = e.dir
	}
}

// Leave moves the thread back to the groups it came from. It writes only
// to files Enter opened. On an error the thread may still be in the group:
// the caller must then let it end (exit the goroutine without unlocking it).
func (e *Entry) Leave() error {
	if e.dir >= 0 {
		err := syscall.Close(e.dir)
		e.dir = -1
		return err
	}
	var errs []error
	for _, fd := range e.back {
		if _, err := syscall.Write(fd, []byte(e.tid)); err != nil {
			errs = append(errs, fmt.Errorf("cgroup %s: leave: %w", e.g.name, err))
		}
		syscall.Close(fd)
	}
	e.back = nil
	return errors.Join(errs...)
}

// Spawn runs start on a thread that is in the group while start runs (see
// Entry), after setting attr (the SysProcAttr of the process start starts)
// for the group. The thread is then released, or ended if it could not
// leave the group.
func (g *Group) Spawn(attr *syscall.SysProcAttr, start func() error) error {
	done := make(chan error, 1)
	go g.spawn(attr, start, done)
	return <-done
}

func (g *Group) spawn(attr *syscall.SysProcAttr, start func() error, done chan<- error) {
	runtime.LockOSThread()
	if syscall.Gettid() == syscall.Getpid() {
		// The main thread does not end with a goroutine locked to it:
		// another thread does the work, so that a thread that fails to
		// leave the group can be ended.
		inner := make(chan error, 1)
		go g.spawn(attr, start, inner)
		err := <-inner
		runtime.UnlockOSThread()
		done <- err
		return
	}
	e, err := g.Enter()
	if err != nil {
		// Enter moved the thread back, or tried to: it ends all the same.
		done <- err
		return
	}
	e.Attr(attr)
	err = start()
	if lerr := e.Leave(); lerr != nil {
		// Ending the goroutine still locked ends the thread, and takes it
		// out of the group.
		done <- errors.Join(err, lerr)
		return
	}
	runtime.UnlockOSThread()
	done <- err
}
