package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hodei-ci/hodei/internal/api"
	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/cli"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/secrets"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
)

// readPipeline reads, parses and expands a pipeline file with the inputs
// given (nil: to validate the file alone, with the inputs' defaults).
// Problems in the file or the inputs are printed to stderr; ok is false
// when the file cannot be run.
func readPipeline(cmd, path string, given map[string]string) (data []byte, includes map[string][]byte, specs []pipeline.JobSpec, ok bool) {
	data, includes, specs, err := loadPipeline(path, given)
	if err != nil {
		var bad pipeline.InputErrors
		if errors.As(err, &bad) {
			fmt.Fprintf(os.Stderr, "hodei %s: %s:\n%v\n", cmd, path, err)
			return nil, nil, nil, false
		}
		if !cli.PipelineErrors(os.Stderr, err) {
			fmt.Fprintf(os.Stderr, "hodei %s: %s: %v\n", cmd, path, err)
		}
		return nil, nil, nil, false
	}
	return data, includes, specs, true
}

// loadPipeline reads, parses and expands a pipeline file with the inputs
// given (nil: the inputs' defaults), and the files it includes (read from
// disk, relative to its directory).
func loadPipeline(path string, given map[string]string) (data []byte, includes map[string][]byte, specs []pipeline.JobSpec, err error) {
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		data, err = pipeline.ReadFile(path, f, 0)
	}
	var p *pipeline.Pipeline
	if err == nil {
		p, err = pipeline.ParseWith(path, data, pipeline.Limits{}, pipeline.FileLoader(0))
	}
	if err == nil {
		includes = p.Includes
	}
	switch {
	case err == nil && given == nil:
		specs, err = pipeline.Expand(p)
	case err == nil:
		var inputs map[string]string
		if inputs, err = pipeline.ResolveInputs(p, given); err == nil {
			specs, err = pipeline.ExpandRun(p, pipeline.RunContext{Event: "manual", Inputs: inputs})
		}
	}
	return data, includes, specs, err
}

func runCmd(args []string) int {
	fs := flags("run", "FILE [flags]", `
Run a pipeline file on this machine, from start to finish, and print each
job's output as it comes, prefixed with the job's key. Nothing needs to be
running: hodei starts a private server with local workers in a temporary
directory and removes it at the end.

Exit status: 0 if the run succeeded, 1 if it failed or was canceled, 2 if
the file is invalid. Ctrl-C cancels the run.

Example:
  hodei run examples/ci.yaml --workers 4
  hodei run deploy.yaml --input env=staging`)
	workers := fs.Int("workers", 2, "number of local workers running jobs in parallel")
	unsafeShared := fs.Bool("unsafe-shared-user", false, "run steps as your own user, without isolation (for machines that cannot isolate steps; see docs/security.md)")
	secretsFile := fs.String("secrets-file", "", "dotenv file (NAME=VALUE lines) of the secrets jobs may name")
	lf := addLogFlags(fs, "warn")
	inputFlags := addInputFlag(fs)
	file, code, ok := parsePipelineFile(fs, args)
	if !ok {
		return code
	}
	if *workers < 1 {
		return usageError(fs, "--workers must be at least 1")
	}
	log, err := lf.logger()
	if err != nil {
		return usageError(fs, "%v", err)
	}
	inputs, err := pipeline.ParseInputFlags(*inputFlags)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	data, includes, _, ok := readPipeline("run", file, inputs)
	if !ok {
		return exitUsage
	}
	var secretsOpts server.SecretsOptions
	if *secretsFile != "" {
		// The values stay in memory: the private server gets them as a
		// read-only backend, not stored in its data dir.
		raw, err := os.ReadFile(*secretsFile)
		if err != nil {
			return usageError(fs, "--secrets-file: %v", err)
		}
		values, err := secrets.ParseDotenv(raw)
		clear(raw)
		if err != nil {
			return usageError(fs, "--secrets-file %s: %v", *secretsFile, err)
		}
		secretsOpts.Provider = secrets.Static(values)
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	dir, err := os.MkdirTemp("", "hodei-run-")
	if err != nil {
		return fail("run", err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	defer startTracing(ctx, "hodei", log)()
	srv, err := server.Start(ctx, server.Options{DataDir: dir, NATSListen: "none", LocalWorkers: *workers, Logger: log, Secrets: secretsOpts, UnsafeSharedUser: *unsafeShared, Ephemeral: true})
	if err != nil {
		return fail("run", err)
	}
	defer srv.Close()

	// The run has no id before it is submitted: follow every run from
	// before the submission, and keep the notes of ours.
	sub := srv.Hub.Subscribe("", 1<<16)
	run, err := srv.SubmitRun(ctx, server.RunRequest{File: file, Data: data, Inputs: inputs, Includes: includes})
	if err != nil {
		sub.Close()
		if cli.PipelineErrors(os.Stderr, err) {
			return exitUsage
		}
		return fail("run", err)
	}
	fmt.Printf("run %s: pipeline %s\n", run.ID, run.Pipeline)

	followCtx, stopFollowing := context.WithCancel(ctx)
	defer stopFollowing()
	go func() {
		interrupted := false
		for {
			select {
			case <-sigs:
				if interrupted {
					fmt.Fprintln(os.Stderr, "hodei run: interrupted again; quitting")
					stopFollowing()
					return
				}
				interrupted = true
				fmt.Fprintln(os.Stderr, "hodei run: interrupted; canceling the run (Ctrl-C again to quit at once)")
				go func() {
					if err := srv.Orch.Cancel(ctx, run.ID); err != nil {
						fmt.Fprintf(os.Stderr, "hodei run: cancel: %v\n", err)
					}
				}()
			case <-followCtx.Done():
				return
			}
		}
	}()

	printer := cli.NewPrinter(cli.StepOutput(os.Stdout), cli.KeyPrefix)
	var end *wire.Run
	err = api.Follow(followCtx, srv.Store, srv.Hub, api.FollowOptions{RunID: run.ID, Sub: sub, Buffer: 1 << 16},
		func(ev wire.Event) error {
			if ev.Type == wire.EventEnd {
				end = ev.End
			}
			return printer.Event(ev)
		})
	_ = printer.Flush()
	if err != nil || end == nil {
		if errors.Is(err, context.Canceled) {
			return exitFailed
		}
		return fail("run", fmt.Errorf("following run %s: %v", run.ID, err))
	}
	if err := cli.Summary(os.Stdout, *end); err != nil {
		return fail("run", err)
	}
	if end.State == state.RunSucceeded {
		return exitOK
	}
	return exitFailed
}

func validateCmd(args []string) int {
	fs := flags("validate", "FILE...", `
Check pipeline files without running them. Each valid file prints
"FILE: ok, N jobs" (N counts matrix combinations); each problem of an invalid
file prints as FILE:LINE:COLUMN: FIELD: MESSAGE on stderr. With --json, the
result is one JSON object on stdout: {"files": [{"file", "valid", "jobs",
"errors": [{"file", "line", "column", "field", "message"}]}]}, the errors as
the API reports them for an invalid pipeline.

Exit status: 0 if every file is valid, 2 otherwise.

Example:
  hodei validate examples/*.yaml`)
	asJSON := addJSONFlag(fs)
	pos, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return usageError(fs, "want at least one pipeline FILE")
	}
	if *asJSON {
		return validateJSON(pos)
	}
	status := exitOK
	for _, file := range pos {
		_, _, specs, ok := readPipeline("validate", file, nil)
		if !ok {
			status = exitUsage
			continue
		}
		noun := "jobs"
		if len(specs) == 1 {
			noun = "job"
		}
		fmt.Printf("%s: ok, %d %s\n", file, len(specs), noun)
	}
	return status
}

// validation is the result of "hodei validate --json".
type validation struct {
	Files []fileValidation `json:"files"`
}

type fileValidation struct {
	File   string             `json:"file"`
	Valid  bool               `json:"valid"`
	Jobs   int                `json:"jobs"`
	Errors []wire.ErrorDetail `json:"errors,omitempty"`
}

func validateJSON(files []string) int {
	status := exitOK
	var out validation
	for _, file := range files {
		_, _, specs, err := loadPipeline(file, nil)
		v := fileValidation{File: file, Valid: err == nil, Jobs: len(specs)}
		if err != nil {
			status = exitUsage
			var ok bool
			if v.Errors, ok = cli.ErrorDetails(err); !ok {
				v.Errors = []wire.ErrorDetail{{File: file, Message: err.Error()}}
			}
		}
		out.Files = append(out.Files, v)
	}
	if code := printJSON(out); code != exitOK {
		return code
	}
	return status
}
