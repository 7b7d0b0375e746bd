package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/cli"
	"github.com/hodei-ci/hodei/internal/client"
)

func artifactsCmd(args []string) int {
	fs := flags("artifacts", "RUN [JOB] [flags]", `
List the artifacts of a run (or of one of its jobs, by key or id): job,
name, files, size and expiry. With --download DIR, fetch them into
DIR/JOB/NAME/, checking every file against the sha256 recorded when it was
uploaded: a file that differs fails the command and names the file.

Examples:
  hodei artifacts 0194d2a9f3c0000a1b2
  hodei artifacts 0194d2a9f3c0000a1b2 build --download ./out`)
	server := addServerFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	dir := fs.String("download", "", "fetch the artifacts into this directory")
	pos, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usageError(fs, "want a RUN id and at most one JOB")
	}
	c, code, ok := newClient(fs, *server)
	if !ok {
		return code
	}
	ctx, stop := signalContext()
	defer stop()
	list, err := c.Artifacts(ctx, pos[0])
	if err != nil {
		return apiFail("artifacts", err)
	}
	if len(pos) == 2 {
		var mine []wire.Artifact
		for _, a := range list {
			if a.Job == pos[1] || a.JobID == pos[1] {
				mine = append(mine, a)
			}
		}
		list = mine
	}
	if *dir != "" {
		for _, a := range list {
			if err := downloadArtifact(ctx, c, pos[0], a, *dir); err != nil {
				return fail("artifacts", err)
			}
		}
	}
	if *asJSON {
		return printJSON(wire.Artifacts{Artifacts: list})
	}
	if len(list) == 0 {
		fmt.Println("no artifacts")
		return exitOK
	}
	rows := make([][]string, len(list))
	for i, a := range list {
		var raw int64
		for _, f := range a.Files {
			raw += f.Size
		}
		rows[i] = []string{a.Job, a.Name, strconv.Itoa(len(a.Files)), cli.FormatBytes(raw), cli.FormatBytes(a.Size), a.ExpiresAt.Local().Format("2006-01-02 15:04")}
	}
	if err := cli.Table(os.Stdout, []string{"JOB", "NAME", "FILES", "SIZE", "STORED", "EXPIRES"}, rows); err != nil {
		return fail("artifacts", err)
	}
	return exitOK
}

// downloadArtifact extracts one artifact into dir/JOB/NAME, checking every
// file's sha256.
func downloadArtifact(ctx context.Context, c *client.Client, run string, a wire.Artifact, dir string) error {
	body, err := c.ArtifactContent(ctx, run, a.JobID, a.Name)
	if err != nil {
		return err
	}
	defer body.Close()
	dst := filepath.Join(dir, a.Job, a.Name)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	files := make([]artifact.File, len(a.Files))
	for i, f := range a.Files {
		files[i] = artifact.File(f)
	}
	if err := artifact.Unpack(body, artifact.Roots{Workspace: dst, Home: filepath.Join(dst, "~")}, files, -1); err != nil {
		return fmt.Errorf("%s of %s: %w", a.Name, a.Job, err)
	}
	fmt.Fprintf(os.Stderr, "%s/%s: %d files verified in %s\n", a.Job, a.Name, len(a.Files), dst)
	return nil
}
