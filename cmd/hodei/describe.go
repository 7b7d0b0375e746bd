package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// The commands described: what shell completion is generated from.
// describeCommands runs every command of commands() with the single
// argument describeArg. parse then records the command's flag set (its
// flags, and in its usage line the synopsis that names its arguments) and
// returns without running anything; runSub records a command's
// subcommands and describes each. A new command, subcommand or flag is
// thus described, and completed, with no change here, as long as the
// command makes its flags with flags and reads them with parse (or
// dispatches with runSub) before it does anything.

// describeArg is the argument that makes a command describe itself; no
// shell passes a NUL byte in an argument.
const describeArg = "\x00describe"

// cmdSpec describes one command or subcommand.
type cmdSpec struct {
	Name     string
	Summary  string
	Synopsis string // what follows "hodei NAME" in its usage line
	Flags    []flagSpec
	Args     []argSpec // its positional arguments, read from Synopsis
	Subs     []*cmdSpec
	// Described is set when the command described its flag set: a command
	// with neither that nor Subs runs something before parse.
	Described bool
}

// flagSpec is one flag of a command.
type flagSpec struct {
	Name  string
	Usage string
	Value bool // it takes a value (it is not a boolean flag)
}

// argSpec is what one positional argument is.
type argSpec struct {
	Kind   string   // argRun, argFile, argWords or "" (anything)
	Words  []string // the choices, for argWords
	Repeat bool     // it may be given again (the synopsis says "...")
}

const (
	argRun   = "run"   // a run's id ("RUN" in a synopsis)
	argFile  = "file"  // a path ("FILE", "DIR")
	argWords = "words" // one of a list ("bash|zsh|fish")
)

// sub is a subcommand: its name, and what runs it with the arguments that
// follow the name.
type sub struct {
	name string
	run  func(args []string) int
}

// runSub runs the subcommand of subs that args[0] names with the rest of
// args. ok is false when args is empty or names none: the caller then says
// so with its own usage. Asked to describe, it describes every subcommand.
func runSub(args []string, subs []sub) (code int, ok bool) {
	if isDescribe(args) {
		parent := describer.cur
		for _, s := range subs {
			child := &cmdSpec{Name: s.name}
			parent.Subs = append(parent.Subs, child)
			describeInto(child, s.run)
		}
		return exitOK, true
	}
	if len(args) == 0 {
		return 0, false
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(args[1:]), true
		}
	}
	return 0, false
}

// runSubUsage is the dispatch of a command (name) made of subcommands and
// described by usage: it runs the subcommand args name, or prints usage
// (to the standard output for help, with exit code 2 to the standard error
// when there is none or it is unknown).
func runSubUsage(name, usage string, args []string, subs []sub) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return exitUsage
	}
	if code, ok := runSub(args, subs); ok {
		return code
	}
	if isHelpArg(args[0]) {
		fmt.Print(usage)
		return exitOK
	}
	fmt.Fprintf(os.Stderr, "hodei %s: unknown subcommand %q\n\n%s", name, args[0], usage)
	return exitUsage
}

// runSubFlags is runSubUsage for a command whose usage is its flag set's;
// want lists the subcommands in the usage error.
func runSubFlags(fs *flag.FlagSet, args []string, subs []sub, want string) int {
	if len(args) == 0 {
		return usageError(fs, "want a subcommand: %s", want)
	}
	if code, ok := runSub(args, subs); ok {
		return code
	}
	if isHelpArg(args[0]) {
		fs.SetOutput(os.Stdout)
		fs.Usage()
		return exitOK
	}
	return usageError(fs, "unknown subcommand %q: want %s", args[0], want)
}

func isHelpArg(a string) bool { return a == "help" || a == "-h" || a == "-help" || a == "--help" }

// describer holds the command being described; its lock is held for the
// whole of describeCommands, so commands run normally meanwhile (which
// never see describeArg) are not affected.
var describer struct {
	sync.Mutex
	cur *cmdSpec
}

func isDescribe(args []string) bool { return len(args) == 1 && args[0] == describeArg }

// describeCommands describes every command of commands().
func describeCommands() []*cmdSpec {
	describer.Lock()
	defer describer.Unlock()
	var out []*cmdSpec
	for _, c := range commands() {
		s := &cmdSpec{Name: c.name, Summary: c.summary}
		describeInto(s, c.run)
		out = append(out, s)
	}
	return out
}

func describeInto(s *cmdSpec, run func([]string) int) {
	prev := describer.cur
	describer.cur = s
	defer func() { describer.cur = prev }()
	run([]string{describeArg})
}

// describeFlagSet records fs in the command being described.
func describeFlagSet(fs *flag.FlagSet) {
	s := describer.cur
	if s == nil {
		return
	}
	var b strings.Builder
	fs.SetOutput(&b)
	fs.Usage()
	fs.SetOutput(io.Discard)
	s.Described = true
	first, help, _ := strings.Cut(b.String(), "\n")
	s.Synopsis = strings.TrimPrefix(first, "Usage: hodei "+fs.Name()+" ")
	if s.Summary == "" {
		s.Summary = firstSentence(help)
	}
	s.Args = synopsisArgs(s.Synopsis)
	fs.VisitAll(func(f *flag.Flag) {
		b, isBool := f.Value.(interface{ IsBoolFlag() bool })
		usage, _, _ := strings.Cut(f.Usage, "\n")
		s.Flags = append(s.Flags, flagSpec{Name: f.Name, Usage: usage, Value: !isBool || !b.IsBoolFlag()})
	})
}

// firstSentence is the first sentence of a command's help, on one line.
func firstSentence(help string) string {
	help = strings.TrimSpace(help)
	if i := strings.Index(help, "\n\n"); i >= 0 {
		help = help[:i]
	}
	help = strings.Join(strings.Fields(help), " ")
	if i := strings.Index(help, ". "); i >= 0 {
		help = help[:i]
	}
	help = strings.TrimSuffix(help, ".")
	if r := []rune(help); len(r) > 80 {
		help = string(r[:79]) + "…"
	}
	return help
}

// synopsisArgs reads the positional arguments of a usage synopsis such as
// "RUN [JOB] [flags]", "FILE...", "bash|zsh|fish" or
// "[--data-dir DIR | --file FILE]": groups of flags are left out.
func synopsisArgs(syn string) []argSpec {
	var out []argSpec
	inGroup, flagValue := false, false
	for _, tok := range strings.Fields(syn) {
		switch {
		case inGroup: // "[--file FILE]": up to the closing bracket
			inGroup = !strings.HasSuffix(tok, "]") && !strings.HasSuffix(tok, ")")
			continue
		case flagValue: // "--role ROLE"
			flagValue = false
			if !strings.HasPrefix(tok, "[") && !strings.HasPrefix(tok, "-") {
				continue
			}
		}
		bare := strings.Trim(tok, "[]()")
		if strings.EqualFold(bare, "flags") || strings.EqualFold(bare, "args") {
			continue
		}
		if strings.HasPrefix(bare, "-") {
			if strings.HasPrefix(tok, "-") {
				flagValue = true
			} else {
				inGroup = !strings.HasSuffix(tok, "]") && !strings.HasSuffix(tok, ")")
			}
			continue
		}
		a := argSpec{Repeat: strings.HasSuffix(bare, "...")}
		bare = strings.TrimSuffix(bare, "...")
		switch {
		case strings.Contains(bare, "|"):
			a.Kind, a.Words = argWords, strings.Split(bare, "|")
		case bare == "RUN":
			a.Kind = argRun
		case bare == "FILE" || bare == "FILES" || bare == "DIR" || bare == "PATH":
			a.Kind = argFile
		}
		out = append(out, a)
	}
	return out
}
