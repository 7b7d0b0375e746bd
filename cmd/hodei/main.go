// Command hodei is Hodei's one binary: the server, the agent, and the
// commands that use them (run a pipeline locally, submit it to a server,
// follow its logs, list runs and workers).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/hodei-ci/hodei/internal/cli"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the run failed or was canceled, or the command failed
	exitUsage  = 2 // bad usage or an invalid pipeline file
)

type command struct {
	name    string
	summary string
	example string
	run     func(args []string) int
}

func commands() []command {
	return []command{
		{"run", "run a pipeline file here, start to finish, and print its output", "hodei run examples/ci.yaml", runCmd},
		{"validate", "check pipeline files without running them", "hodei validate examples/*.yaml", validateCmd},
		{"server", "start a server: API, scheduler and local workers", "hodei server --data-dir ./hodei-data --workers 4", serverCmd},
		{"agent", "start a worker that takes jobs from a server's NATS", "hodei agent --nats nats://ci-server:4222 --cpu 4 --memory 8Gi", agentCmd},
		{"submit", "send a pipeline file to a server (and follow it)", "hodei submit examples/ci.yaml --follow", submitCmd},
		{"runs", "list the runs of a server, or show one", "hodei runs 01944c3b2a10000f3e2", runsCmd},
		{"logs", "print (or follow) the output of a run or one of its jobs", `hodei logs RUN "test (unit, 1)" --follow`, logsCmd},
		{"artifacts", "list the artifacts of a run, or download them (checked by sha256)", "hodei artifacts RUN build --download ./out", artifactsCmd},
		{"cancel", "cancel a run", "hodei cancel RUN", cancelCmd},
		{"approve", "approve a job that waits for an approval (its environment)", `hodei approve RUN deploy --comment "release 1.4"`, approveCmd},
		{"reject", "reject a job that waits for an approval: it fails", `hodei reject RUN deploy --comment "freeze"`, rejectCmd},
		{"rerun", "run a run again: all its jobs, or only the failed ones and their dependents", "hodei rerun RUN --failed", rerunCmd},
		{"workers", "list the workers of a server", "hodei workers", workersCmd},
		{"pools", "list the worker pools of a server and their providers' state", "hodei pools", poolsCmd},
		{"login", "sign in to a server (OpenID Connect, or save an API token)", "hodei login --issuer https://sso.example.com/realms/ci --client-id hodei-cli", loginCmd},
		{"token", "create, list and revoke API tokens (administrators)", "hodei token create ci-bot --role developer --tenant acme", tokenCmd},
		{"policy", "check and test Cedar authorization policies", "hodei policy test --policies ./policies --requests tests.json", policyCmd},
		{"audit", "verify the audit trail, or search it", "hodei audit verify --data-dir ./hodei-data", auditCmd},
		{"repo", "add, list and remove the repositories whose webhooks start runs", "hodei repo add app --url https://github.com/acme/app.git --forge github --token-secret GH_TOKEN --webhook-secret-secret GH_HOOK", repoCmd},
		{"secret", "store, rotate and delete the secrets jobs use", "printf %s \"$TOKEN\" | hodei secret set DEPLOY_TOKEN", secretCmd},
		{"nats-config", "write the configuration of a node of an external NATS cluster (routes, TLS, per-agent permissions)", "hodei nats-config --name nats-1 --store-dir /var/lib/nats --routes nats-1:6222,nats-2:6222,nats-3:6222 --tls-cert nats-1.crt --tls-key nats-1.key --ca ca.crt --server ci --agent builder-1", natsConfigCmd},
		{"ca", "create an internal CA and issue server, agent and client certificates", "hodei ca issue agent builder-1 --pki-dir ./hodei-pki", caCmd},
		{"bench", "measure a server under load", "hodei bench", benchCmd},
		{"completion", "print a shell completion script (bash, zsh or fish)", "source <(hodei completion bash)", completionCmd},
		{"sim", "simulate the scheduler on a recorded or generated workload", "hodei sim --generate --jobs 100000 --workers 500 --policy hodei", simCmd},
	}
}

func main() { os.Exit(mainArgs(os.Args[1:])) }

func mainArgs(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			for _, c := range commands() {
				if c.name == args[1] {
					return c.run([]string{"--help"})
				}
			}
		}
		usage(os.Stdout)
		return exitOK
	case "version", "--version":
		fmt.Println("hodei (development build)")
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args[1:])
		}
	}
	fmt.Fprintf(os.Stderr, "hodei: unknown command %q\n\n", name)
	usage(os.Stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Hodei is a distributed CI/CD system: it runs pipelines (YAML files of jobs
and their steps) on a fleet of workers.

Usage: hodei COMMAND [ARGS] [FLAGS]

Commands:
`)
	var rows [][]string
	for _, c := range commands() {
		rows = append(rows, []string{"  " + c.name, c.summary})
	}
	tableNoHeader(w, rows)
	fmt.Fprint(w, `
Examples:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %s\n", c.example)
	}
	fmt.Fprint(w, `
Start here: "hodei run examples/hello.yaml" runs a pipeline on this machine
with nothing else to set up. For a shared server, run "hodei server" and send
it pipelines with "hodei submit".

Every flag can also be set in the environment: --data-dir from HODEI_DATA_DIR,
--server from HODEI_SERVER, and so on. Flags win over the environment.

Run "hodei COMMAND --help" for the flags of a command.
`)
}

func tableNoHeader(w io.Writer, rows [][]string) {
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s  %s\n", width, r[0], r[1])
	}
}

// flags makes a command's flag set; synopsis follows "hodei NAME" in the
// usage line and help explains the command.
func flags(name, synopsis, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: hodei %s %s\n\n%s\n", name, synopsis, strings.TrimSpace(help))
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(w, "\nFlags:\n")
			cli.PrintFlags(w, fs)
		}
	}
	return fs
}

// parse parses a command's arguments, flags and environment. On --help it
// prints the usage to stdout and returns exit code 0 with ok false; on a
// mistake, the error and the usage to stderr and exit code 2. Given
// describeArg, it describes fs (see describeCommands) and returns ok false.
func parse(fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	fs.SetOutput(io.Discard)
	if isDescribe(args) {
		describeFlagSet(fs)
		return nil, exitOK, false
	}
	pos, err := cli.Parse(fs, args, os.LookupEnv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(os.Stdout)
		fs.Usage()
		return nil, exitOK, false
	case err != nil:
		fmt.Fprintf(os.Stderr, "hodei %s: %v\n\n", fs.Name(), err)
		fs.SetOutput(os.Stderr)
		fs.Usage()
		return nil, exitUsage, false
	}
	return pos, exitOK, true
}

// parseNoArgs is parse for a command that takes flags but no arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) (code int, ok bool) {
	_, code, ok = parseArgs(fs, args, 0, "")
	return code, ok
}

// parseArgs is parse for a command that takes n arguments: want says which
// in the usage error (see checkArgs).
func parseArgs(fs *flag.FlagSet, args []string, n int, want string) (pos []string, code int, ok bool) {
	pos, code, ok = parse(fs, args)
	if !ok {
		return nil, code, false
	}
	if code, ok := checkArgs(fs, pos, n, want); !ok {
		return nil, code, false
	}
	return pos, exitOK, true
}

// parsePipelineFile is parse for a command that takes one pipeline FILE
// (hodei run, hodei submit).
func parsePipelineFile(fs *flag.FlagSet, args []string) (file string, code int, ok bool) {
	pos, code, ok := parse(fs, args)
	if !ok {
		return "", code, false
	}
	if len(pos) != 1 {
		return "", usageError(fs, "want one pipeline FILE, got %d arguments", len(pos)), false
	}
	return pos[0], exitOK, true
}

// usageError reports a mistake in the arguments of a command.
func usageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "hodei %s: %s\n\n", fs.Name(), fmt.Sprintf(format, a...))
	fs.SetOutput(os.Stderr)
	fs.Usage()
	return exitUsage
}

// fail reports an error of a command and returns exit code 1.
func fail(name string, err error) int {
	fmt.Fprintf(os.Stderr, "hodei %s: %v\n", name, err)
	return exitFailed
}

// logFlags adds --log-level and --log-format.
type logFlags struct{ level, format *string }

func addLogFlags(fs *flag.FlagSet, level string) logFlags {
	return logFlags{
		level:  fs.String("log-level", level, "least important log messages shown: debug, info, warn or error"),
		format: fs.String("log-format", "text", "log format: text or json"),
	}
}

func (l logFlags) logger() (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", *l.level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch *l.format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", *l.format)
}
