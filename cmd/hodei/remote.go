package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/cli"
	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
)

const defaultServer = "http://127.0.0.1:8080"

// addInputFlag adds --input (repeatable) to the flags of a command that
// starts a pipeline (run, submit): read it with pipeline.ParseInputFlags.
func addInputFlag(fs *flag.FlagSet) *listFlag {
	var l listFlag
	fs.Var(&l, "input", "NAME=VALUE for one of the pipeline's inputs (repeatable)")
	return &l
}

func addServerFlag(fs *flag.FlagSet) *string {
	addCAFlag(fs)
	return fs.String("server", defaultServer, "address of the Hodei server's API")
}

// clientNoArgs parses a command that takes flags but no arguments and
// returns its API client; *server is read after the flags are parsed.
func clientNoArgs(fs *flag.FlagSet, args []string, server *string) (*client.Client, int, bool) {
	_, c, code, ok := clientArgs(fs, args, server, 0, "")
	return c, code, ok
}

// clientArgs parses a command that takes n arguments (want says which, in
// the usage error when there are not n) and returns them with its API
// client; *server is read after the flags are parsed.
func clientArgs(fs *flag.FlagSet, args []string, server *string, n int, want string) ([]string, *client.Client, int, bool) {
	pos, code, ok := parseArgs(fs, args, n, want)
	if !ok {
		return nil, nil, code, false
	}
	c, code, ok := newClient(fs, *server)
	return pos, c, code, ok
}

// checkArgs checks that a command was given n arguments: want says which
// in the usage error (with n 0: the first argument is unexpected).
func checkArgs(fs *flag.FlagSet, pos []string, n int, want string) (int, bool) {
	switch {
	case len(pos) == n:
		return exitOK, true
	case n == 0:
		return usageError(fs, "unexpected argument %q", pos[0]), false
	}
	return usageError(fs, "%s", want), false
}

// callAPI makes one call to the API (cmd names the command in its error),
// with a context that ends at SIGINT or SIGTERM, and prints its result as
// JSON with --json (asJSON) or else with text.
func callAPI[T any](cmd string, asJSON bool, call func(context.Context) (T, error), text func(T) int) int {
	ctx, stop := signalContext()
	defer stop()
	v, err := call(ctx)
	if err != nil {
		return apiFail(cmd, err)
	}
	if asJSON {
		return printJSON(v)
	}
	return text(v)
}

// apiJSON is the call of callAPI that sends body (if not nil) to path
// with method and query q and decodes the answer into a T.
func apiJSON[T any](c *client.Client, method, path string, q url.Values, body any) func(context.Context) (T, error) {
	return func(ctx context.Context) (T, error) {
		var v T
		err := c.JSON(ctx, method, path, q, body, &v)
		return v, err
	}
}

// printTable prints rows under header, or none (what to say when there
// are no rows); cmd names the command in an error.
func printTable(cmd, none string, header []string, rows [][]string) int {
	if len(rows) == 0 {
		fmt.Println(none)
		return exitOK
	}
	if err := cli.Table(os.Stdout, header, rows); err != nil {
		return fail(cmd, err)
	}
	return exitOK
}

func newClient(fs *flag.FlagSet, server string) (*client.Client, int, bool) {
	hc, err := apiHTTPClient(fs)
	if err != nil {
		return nil, usageError(fs, "--ca: %v", err), false
	}
	c, err := client.New(server, hc)
	if err != nil {
		return nil, usageError(fs, "--server: %v", err), false
	}
	c.SetToken(clientToken(server))
	return c, 0, true
}

// apiFail reports an error of a call to the API.
func apiFail(cmd string, err error) int {
	var ae *client.Error
	if errors.As(err, &ae) {
		fmt.Fprintf(os.Stderr, "hodei %s: %s\n", cmd, ae.Message)
		return exitFailed
	}
	return fail(cmd, err)
}

// signalContext ends at SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// follow prints a run's events as `hodei run` does, until it ends, and
// returns the exit status of its final state. With a job, only that job's
// output is printed, as it is. A progress line, if any, is erased before
// each event is printed, and for good once a job starts.
func follow(ctx context.Context, cmd string, c *client.Client, runID, job string, progress *queueProgress) int {
	prefix := cli.KeyPrefix
	if job != "" {
		prefix = cli.NoPrefix
	}
	printer := cli.NewPrinter(cli.StepOutput(os.Stdout), prefix)
	var end *wire.Run
	err := c.FollowLogs(ctx, runID, job, func(ev wire.Event) error {
		if progress != nil {
			progress.event(ev)
		}
		switch ev.Type {
		case wire.EventEnd:
			end = ev.End
		case wire.EventJob:
			if job != "" {
				return nil // the output of one job stays as it is
			}
		}
		return printer.Event(ev)
	})
	_ = printer.Flush()
	if progress != nil {
		progress.stop()
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "hodei %s: stopped following; run %s goes on (\"hodei cancel %s\" stops it)\n", cmd, runID, runID)
			return exitFailed
		}
		return apiFail(cmd, err)
	}
	if job == "" {
		if err := cli.Summary(os.Stdout, *end); err != nil {
			return fail(cmd, err)
		}
	} else {
		fmt.Fprintf(os.Stderr, "run %s %s\n", end.ID, end.State)
	}
	if end.State == state.RunSucceeded {
		return exitOK
	}
	return exitFailed
}

// followJSON prints the output of a followed run as JSON lines (one
// wire.LogEvent a line), until the run ends, and returns the exit status
// of its final state.
func followJSON(ctx context.Context, cmd string, c *client.Client, runID, job string) int {
	var end *wire.Run
	err := c.FollowLogs(ctx, runID, job, func(ev wire.Event) error {
		switch ev.Type {
		case wire.EventLog:
			return printJSONLine(os.Stdout, ev.Log)
		case wire.EventEnd:
			end = ev.End
		}
		return nil
	})
	if err != nil {
		return apiFail(cmd, err)
	}
	if end.State == state.RunSucceeded {
		return exitOK
	}
	return exitFailed
}

func submitCmd(args []string) int {
	fs := flags("submit", "FILE [flags]", `
Send a pipeline file to a Hodei server as a new run and print the run's id.
With --follow, then print its output as it comes (like "hodei run") and exit
with its outcome: 0 if it succeeded, 1 if not. While its jobs wait in the
queue, a line on stderr (a terminal's, or any with --progress) says why each
one waits ("waiting: build: asks 64 cpu, the largest worker has 2
(no_worker_large_enough)"), until one starts. With --json, it prints the run
made as JSON instead of its id. An invalid file, or inputs that do not fit
the file's inputs:, print their problems and exit 2. FILE "-" reads the
standard input.

Example:
  hodei submit examples/ci.yaml --server http://ci.example.com:8080 --follow
  hodei submit deploy.yaml --input env=prod --input dry_run=false`)
	server := addServerFlag(fs)
	tenant := fs.String("tenant", "", "tenant the run belongs to (default: the server's default)")
	doFollow := fs.Bool("follow", false, "follow the run's output until it ends")
	showProgress := fs.Bool("progress", false, "with --follow: show why the run's jobs wait on stderr even when it is not a terminal")
	asJSON := addJSONFlag(fs)
	maxPipeline := fs.String("max-pipeline-bytes", "1Mi", "largest pipeline file read, like the server's flag of that name")
	inputFlags := addInputFlag(fs)
	file, code, ok := parsePipelineFile(fs, args)
	if !ok {
		return code
	}
	inputs, err := pipeline.ParseInputFlags(*inputFlags)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	if *asJSON && *doFollow {
		return usageError(fs, `--json prints the run made; follow it with "hodei logs RUN --follow --json"`)
	}
	c, code, ok := newClient(fs, *server)
	if !ok {
		return code
	}
	maxBytes, err := pipeline.ParseMemory(*maxPipeline)
	if err != nil {
		return usageError(fs, "--max-pipeline-bytes: %v", err)
	}
	in := os.Stdin
	if file == "-" {
		file = "stdin.yaml"
	} else if in, err = os.Open(file); err != nil {
		fmt.Fprintf(os.Stderr, "hodei submit: %v\n", err)
		return exitUsage
	} else {
		defer in.Close()
	}
	data, err := pipeline.ReadFile(file, in, int(min(maxBytes, 1<<30)))
	if err != nil {
		if !cli.PipelineErrors(os.Stderr, err) {
			fmt.Fprintf(os.Stderr, "hodei submit: %v\n", err)
		}
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	// The files the pipeline includes are read here and sent with it: the
	// server has only what it is sent. A file that does not parse here
	// goes as it is, for the server to say what is wrong with it.
	var includes map[string][]byte
	if p, err := pipeline.ParseWith(file, data, pipeline.Limits{MaxFileBytes: int(min(maxBytes, 1<<30)), MaxJobs: math.MaxInt32}, pipeline.FileLoader(int(min(maxBytes, 1<<30)))); err == nil {
		includes = p.Includes
	}
	run, err := c.SubmitFiles(ctx, file, data, *tenant, inputs, includes)
	if err != nil {
		var ae *client.Error
		if errors.As(err, &ae) && (ae.Code == wire.CodeInvalidPipeline || ae.Code == wire.CodeInvalidInputs) {
			fmt.Fprintln(os.Stderr, ae.Message)
			return exitUsage
		}
		return apiFail("submit", err)
	}
	if *asJSON {
		return printJSON(run)
	}
	fmt.Println(run.ID)
	if !*doFollow {
		return exitOK
	}
	var progress *queueProgress
	if *showProgress || cli.IsTerminal(os.Stderr) {
		progress = newQueueProgress(os.Stderr)
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go progress.watch(watchCtx, c, run.ID)
	}
	return follow(ctx, "submit", c, run.ID, "", progress)
}

func runsCmd(args []string) int {
	fs := flags("runs", "[RUN] [flags]", `
List the runs of a server, newest first; or, given a run's id, show the run
and its jobs.

Examples:
  hodei runs --state failed --limit 10
  hodei runs 0194d2a9f3c0000a1b2 --json`)
	server := addServerFlag(fs)
	asJSON := addJSONFlag(fs)
	st := fs.String("state", "", "list only runs in this state: queued, running, succeeded, failed or canceled")
	tenant := fs.String("tenant", "", "list only runs of this tenant")
	limit := fs.Int("limit", 20, "most runs listed (1-1000)")
	before := fs.String("before", "", "list runs older than this run id (the next page)")
	pos, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return usageError(fs, "want at most one RUN id")
	}
	c, code, ok := newClient(fs, *server)
	if !ok {
		return code
	}
	ctx, stop := signalContext()
	defer stop()
	if len(pos) == 1 {
		run, err := c.GetRun(ctx, pos[0])
		if err != nil {
			return apiFail("runs", err)
		}
		// The jobs with their attempts: how each ended, and why.
		if jobs, err := c.Jobs(ctx, run.ID); err == nil && len(jobs) == len(run.Jobs) {
			run.Jobs = jobs
		}
		if *asJSON {
			return printJSON(run)
		}
		// The jobs with their attempts: each attempt's worker, exit code,
		// peak memory and CPU time.
		jobs, err := c.Jobs(ctx, run.ID)
		if err != nil {
			return apiFail("runs", err)
		}
		printRun(os.Stdout, run, jobs)
		return exitOK
	}
	l, err := c.ListRuns(ctx, client.ListOptions{State: *st, Tenant: *tenant, Limit: *limit, Before: *before})
	if err != nil {
		return apiFail("runs", err)
	}
	if *asJSON {
		return printJSON(l)
	}
	if len(l.Runs) == 0 {
		fmt.Println("no runs")
		return exitOK
	}
	if err := cli.RunsTable(os.Stdout, l.Runs); err != nil {
		return fail("runs", err)
	}
	if l.Next != "" {
		fmt.Printf("\nmore: hodei runs --before %s\n", l.Next)
	}
	return exitOK
}

func printRun(w io.Writer, r wire.Run, jobs []wire.Job) {
	fmt.Fprintf(w, "run       %s\npipeline  %s (%s)\ntenant    %s\nstate     %s\ncreated   %s\nduration  %s\n",
		cli.Text(r.ID), cli.Text(r.Pipeline), cli.Text(r.File), cli.Text(r.Tenant), cli.Text(string(r.State)), cli.FormatTime(r.CreatedAt), cli.FormatDuration(r.Duration()))
	if r.Error != "" {
		fmt.Fprintf(w, "error     %s\n", cli.Text(r.Error))
	}
	if len(r.Inputs) > 0 {
		names := slices.Sorted(maps.Keys(r.Inputs))
		parts := make([]string, len(names))
		for i, k := range names {
			parts[i] = k + "=" + r.Inputs[k]
		}
		fmt.Fprintf(w, "inputs    %s\n", cli.Text(strings.Join(parts, " ")))
	}
	if r.RerunOf != "" {
		what := "all jobs"
		if r.FailedOnly {
			what = "failed jobs and their dependents"
		}
		fmt.Fprintf(w, "rerun of  %s (%s)\n", cli.Text(r.RerunOf), what)
	}
	if t := r.Trigger; t != nil {
		fmt.Fprintf(w, "source    %s\n", cli.Text(cli.TriggerText(t)))
		for _, st := range r.Statuses {
			line := st.State
			if st.Error != "" {
				line += " not posted: " + st.Error
			}
			fmt.Fprintf(w, "status    %s %s\n", cli.FormatTime(st.At), cli.Text(line))
		}
	}
	fmt.Fprintln(w)
	rows := make([][]string, len(r.Jobs))
	for i, j := range r.Jobs {
		dur := "-"
		if j.StartedAt != nil {
			dur = cli.FormatDuration(j.Duration())
		}
		exit := "-"
		if j.ExitCode != nil {
			exit = fmt.Sprint(*j.ExitCode)
		}
		worker := j.Worker
		if worker == "" {
			worker = "-"
		}
		note := j.Error
		if (j.State == state.JobQueued || j.State == state.JobPending) && j.Reason != "" {
			// Why it waits, e.g. "waiting: asks 64 cpu, the largest
			// worker has 2 (no_worker_large_enough)".
			note = fmt.Sprintf("waiting: %s (%s)", j.ReasonDetail, j.Reason)
		}
		if c := j.Carried; c != nil {
			note = fmt.Sprintf("carried from run %s, attempt %d of %s", c.RunID, c.Attempt, c.JobID)
		}
		if a := j.Approval; a != nil && note == "" {
			note = approvalNote(j.State, a)
		}
		rows[i] = []string{j.Key, string(j.State), fmt.Sprint(j.Attempt), dur, exit, worker, note}
	}
	_ = cli.Table(w, []string{"JOB", "STATE", "ATTEMPTS", "DURATION", "EXIT", "WORKER", "ERROR"}, rows)
	fmt.Fprintln(w)
	// The outputs of the jobs that have some, one job a line.
	shown := false
	for _, j := range r.Jobs {
		if len(j.Outputs) == 0 {
			continue
		}
		names := slices.Sorted(maps.Keys(j.Outputs))
		parts := make([]string, len(names))
		for i, k := range names {
			parts[i] = k + "=" + strconv.Quote(j.Outputs[k])
		}
		fmt.Fprintf(w, "outputs of %s: %s\n", cli.Text(j.Key), cli.Text(strings.Join(parts, " ")))
		shown = true
	}
	if shown {
		fmt.Fprintln(w)
	}
	_ = cli.AttemptsTable(w, jobs)
}

// approvalNote says where a job of an environment stands: "production:
// hodei approve or reject before 2026-03-01 12:00", "production: approved by
// alice (user:alice) at ...".
func approvalNote(st state.JobState, a *wire.Approval) string {
	switch {
	case st == state.JobWaitingApproval && a.Deadline != nil:
		return a.Environment + ": hodei approve or reject before " + cli.FormatTime(*a.Deadline)
	case a.Decision == "":
		return a.Environment
	}
	note := a.Environment + ": " + strings.ReplaceAll(a.Decision, "_", " ")
	if a.DecidedBy != "" {
		note += " by " + a.DecidedBy
	}
	if a.DecidedAt != nil {
		note += " at " + cli.FormatTime(*a.DecidedAt)
	}
	if a.Comment != "" {
		note += " (" + a.Comment + ")"
	}
	return cli.Text(note)
}

func logsCmd(args []string) int {
	fs := flags("logs", "RUN [JOB] [flags]", `
Print the output of a run: of every job, each line prefixed with its job's
key, or of one job (named by its key or id) as it is. With --follow, keep
printing as the run goes on, until it ends; the exit status is then 0 if the
run succeeded, 1 if not. On a terminal, colours are kept and every other
escape sequence is printed escaped; into a pipe or a file, the output is
exactly what the steps wrote, with the agent's header and footer lines around
each step ("==> step 1/2: make", "<== step 1/2 exited 0 in 1.2s"). A job that
ran more than once shows "--- attempt N ---" before each attempt's output.
With --timestamps, each line starts with the time it was stored. With
--json, each chunk of output is a line of JSON: {"job_id", "job_key",
"attempt", "step", "seq", "data", "at"} (the API's log event; see
docs/api.md), with --follow too.

Examples:
  hodei logs 0194d2a9f3c0000a1b2
  hodei logs 0194d2a9f3c0000a1b2 "test (unit, 1)" --follow
  hodei logs 0194d2a9f3c0000a1b2 build --timestamps`)
	server := addServerFlag(fs)
	doFollow := fs.Bool("follow", false, "keep printing until the run ends")
	timestamps := fs.Bool("timestamps", false, "start each line with the time it was stored (RFC 3339, UTC, milliseconds)")
	asJSON := addJSONFlag(fs)
	pos, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usageError(fs, "want a RUN id and at most one JOB")
	}
	if *doFollow && *timestamps {
		return usageError(fs, "--timestamps works only without --follow")
	}
	if *asJSON && *timestamps {
		return usageError(fs, "--timestamps is for text: with --json, every line has its time")
	}
	c, code, ok := newClient(fs, *server)
	if !ok {
		return code
	}
	job := ""
	if len(pos) == 2 {
		job = pos[1]
	}
	ctx, stop := signalContext()
	defer stop()
	switch {
	case *doFollow && *asJSON:
		return followJSON(ctx, "logs", c, pos[0], job)
	case *doFollow:
		return follow(ctx, "logs", c, pos[0], job, nil)
	case *asJSON:
		if err := c.Logs(ctx, pos[0], job, client.LogsOptions{JSONLines: true}, os.Stdout); err != nil {
			return apiFail("logs", err)
		}
		return exitOK
	}
	out := cli.StepOutput(os.Stdout)
	err := c.Logs(ctx, pos[0], job, client.LogsOptions{Timestamps: *timestamps}, out)
	if f, ok := out.(*cli.TerminalWriter); ok && err == nil {
		err = f.Flush()
	}
	if err != nil {
		return apiFail("logs", err)
	}
	return exitOK
}

func cancelCmd(args []string) int {
	fs := flags("cancel", "RUN [flags]", `
Cancel a run: jobs not started are canceled and running ones are stopped.

Example:
  hodei cancel 0194d2a9f3c0000a1b2`)
	server := addServerFlag(fs)
	asJSON := addJSONFlag(fs)
	pos, c, code, ok := clientArgs(fs, args, server, 1, "want one RUN id")
	if !ok {
		return code
	}
	return callAPI("cancel", *asJSON, func(ctx context.Context) (wire.Run, error) { return c.Cancel(ctx, pos[0]) },
		func(run wire.Run) int {
			fmt.Printf("run %s %s\n", run.ID, run.State)
			return exitOK
		})
}

func approveCmd(args []string) int { return decideCmd("approve", args) }

func rejectCmd(args []string) int { return decideCmd("reject", args) }

// decideCmd approves or rejects (verb) a job that waits for an approval.
func decideCmd(verb string, args []string) int {
	what := "Approve a job that waits for an approval: it is queued and runs."
	if verb == "reject" {
		what = "Reject a job that waits for an approval: it fails, and the jobs that\nneed it see a failure."
	}
	fs := flags(verb, "RUN JOB [flags]", `
`+what+` JOB is the job's key or id. Who decides, when,
and the comment are kept on the job and in the audit trail. The policies
must allow approveJob on the run and, when the job's environment names
approvers, the caller must hold one of those roles or groups.

Example:
  hodei `+verb+` 0194d2a9f3c0000a1b2 deploy --comment "release 1.4"`)
	server := addServerFlag(fs)
	asJSON := addJSONFlag(fs)
	comment := fs.String("comment", "", "why (kept with the decision)")
	pos, c, code, ok := clientArgs(fs, args, server, 2, "want a RUN id and a JOB")
	if !ok {
		return code
	}
	decide := c.Approve
	if verb == "reject" {
		decide = c.Reject
	}
	return callAPI(verb, *asJSON, func(ctx context.Context) (wire.Job, error) { return decide(ctx, pos[0], pos[1], *comment) },
		func(j wire.Job) int {
			by := ""
			if j.Approval != nil {
				by = " by " + j.Approval.DecidedBy
			}
			fmt.Printf("job %s of run %s %s%s: %s\n", j.Key, pos[0], pastTense(verb), by, j.State)
			return exitOK
		})
}

func rerunCmd(args []string) int {
	fs := flags("rerun", "RUN [flags]", `
Run a run again: a new run of the same pipeline file (as the run was made
with it), inputs and trigger; a run from a repository checks out the same
commit. With --failed, only the jobs that failed or were cancelled and the
jobs that need them run again; the jobs that succeeded are carried over
(their logs and artifacts stay with the run that ran them).

Examples:
  hodei rerun 0194d2a9f3c0000a1b2
  hodei rerun 0194d2a9f3c0000a1b2 --failed`)
	server := addServerFlag(fs)
	asJSON := addJSONFlag(fs)
	failed := fs.Bool("failed", false, "run again only the failed and cancelled jobs and their dependents")
	pos, c, code, ok := clientArgs(fs, args, server, 1, "want one RUN id")
	if !ok {
		return code
	}
	return callAPI("rerun", *asJSON, func(ctx context.Context) (wire.Run, error) { return c.Rerun(ctx, pos[0], *failed) },
		func(run wire.Run) int {
			fmt.Printf("run %s %s (re-run of %s)\n", run.ID, run.State, pos[0])
			return exitOK
		})
}

func workersCmd(args []string) int {
	fs := flags("workers", "[flags]", `
List the workers a server knows: their pool, state, capacity in use, jobs,
age (since they joined) and last heartbeat. Workers lost for more than 10
minutes are left out unless --all is given.

Example:
  hodei workers --server http://ci.example.com:8080`)
	server := addServerFlag(fs)
	asJSON := addJSONFlag(fs)
	all := fs.Bool("all", false, "list workers lost long ago too")
	c, code, ok := clientNoArgs(fs, args, server)
	if !ok {
		return code
	}
	list := c.Workers
	if *all {
		list = c.AllWorkers
	}
	return callAPI("workers", *asJSON, func(ctx context.Context) (wire.WorkerList, error) {
		ws, err := list(ctx)
		return wire.WorkerList{Workers: ws}, err
	}, func(l wire.WorkerList) int {
		// The table of cli.WorkersTable, with each worker's age (since it
		// first joined).
		now := time.Now()
		rows := make([][]string, len(l.Workers))
		for i, x := range l.Workers {
			rows[i] = []string{
				x.ID, x.Pool, string(x.State),
				cli.FormatCPU(x.UsedCPUMilli) + "/" + cli.FormatCPU(x.CPUMilli),
				cli.FormatBytes(x.UsedMemory) + "/" + cli.FormatBytes(x.MemoryBytes),
				strconv.Itoa(len(x.Jobs)),
				cli.FormatDuration(now.Sub(x.FirstSeen).Round(time.Second)),
				cli.FormatAgo(x.LastSeen, now),
			}
		}
		return printTable("workers", "no workers", []string{"ID", "POOL", "STATE", "CPU", "MEMORY", "JOBS", "AGE", "LAST SEEN"}, rows)
	})
}

// pastTense is "approved" or "rejected".
func pastTense(verb string) string {
	if verb == "reject" {
		return "rejected"
	}
	return "approved"
}
