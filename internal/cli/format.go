package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
)

// FormatDuration writes a duration for people: "850ms", "1.2s", "3m04s",
// "2h05m".
func FormatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
}

// FormatCPU writes millicores as cores: 2000 -> "2", 500 -> "0.5".
func FormatCPU(milli int64) string {
	return strconv.FormatFloat(float64(milli)/1000, 'f', -1, 64)
}

// FormatBytes writes a size with a binary unit: "64Mi", "1.5Gi".
func FormatBytes(n int64) string { return pipeline.FormatBytes(n) }

// FormatAgo writes how long ago t was: "3s ago"; "-" for the zero time.
func FormatAgo(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "just now"
	}
	return FormatDuration(d.Truncate(time.Second)) + " ago"
}

// FormatTime writes a time in local time, to the second; "-" for zero.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// tableSpace keeps a cell on its line and in its column.
var tableSpace = strings.NewReplacer("\t", " ", "\n", " ")

// Table writes rows under a header, in aligned columns. Tabs and newlines
// in a cell become spaces, and cells go through Text: a control character
// in a name cannot act on the terminal.
func Table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	clean := func(cells []string) string {
		out := make([]string, len(cells))
		for i, c := range cells {
			out[i] = Text(tableSpace.Replace(c))
		}
		return strings.Join(out, "\t")
	}
	if _, err := fmt.Fprintln(tw, clean(header)); err != nil {
		return err
	}
	for _, r := range rows {
		if _, err := fmt.Fprintln(tw, clean(r)); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// JobsTable writes the jobs of a run: key, state, attempts, duration.
func JobsTable(w io.Writer, jobs []wire.Job) error {
	rows := make([][]string, len(jobs))
	for i, j := range jobs {
		dur := "-"
		if j.StartedAt != nil {
			dur = FormatDuration(j.Duration())
		}
		attempts := strconv.Itoa(j.Attempt)
		if j.MaxAttempts > 1 {
			attempts += "/" + strconv.Itoa(j.MaxAttempts)
		}
		rows[i] = []string{j.Key, string(j.State), attempts, dur}
	}
	return Table(w, []string{"JOB", "STATE", "ATTEMPTS", "DURATION"}, rows)
}

// AttemptsTable writes every attempt of jobs: its worker, state, exit code,
// duration, and the peak memory and CPU time its worker measured ("-" where
// it could not).
func AttemptsTable(w io.Writer, jobs []wire.Job) error {
	var rows [][]string
	for _, j := range jobs {
		for _, a := range j.Attempts {
			dur, exit, peak, cpu := "-", "-", "-", "-"
			if a.StartedAt != nil && a.FinishedAt != nil {
				dur = FormatDuration(a.FinishedAt.Sub(*a.StartedAt))
			}
			if a.ExitCode != nil {
				exit = strconv.Itoa(*a.ExitCode)
			}
			if a.PeakMemory != nil {
				peak = FormatBytes(*a.PeakMemory)
			}
			if a.CPUSeconds != nil {
				cpu = FormatDuration(time.Duration(*a.CPUSeconds * float64(time.Second)))
			}
			ended := "-"
			if a.Reason != "" {
				ended = a.Reason
			}
			worker := a.Worker
			if worker == "" {
				worker = "-"
			}
			rows = append(rows, []string{j.Key, strconv.Itoa(a.N), worker, string(a.State), exit, dur, peak, cpu, ended})
		}
	}
	return Table(w, []string{"JOB", "ATTEMPT", "WORKER", "STATE", "EXIT", "DURATION", "PEAK MEMORY", "CPU TIME", "ENDED"}, rows)
}

// RunsTable writes a list of runs; when some come from a repository, a
// column says from which event, commit and pipeline file.
func RunsTable(w io.Writer, runs []wire.Run) error {
	rows := make([][]string, len(runs))
	triggered := slices.ContainsFunc(runs, func(r wire.Run) bool { return r.Trigger != nil })
	for i, r := range runs {
		rows[i] = []string{r.ID, r.Pipeline, string(r.State), FormatTime(r.CreatedAt), FormatDuration(r.Duration())}
		if triggered {
			src := "-"
			if r.Trigger != nil {
				src = TriggerText(r.Trigger) + " " + r.File
			}
			rows[i] = append(rows[i], src)
		}
	}
	head := []string{"ID", "PIPELINE", "STATE", "CREATED", "DURATION"}
	if triggered {
		head = append(head, "SOURCE")
	}
	return Table(w, head, rows)
}

// TriggerText says what started a run from a repository: "app push
// refs/heads/main 1a2b3c4d5e6f".
func TriggerText(t *wire.Trigger) string {
	commit := t.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	s := t.Repo + " " + t.Event + " " + t.Ref + " " + commit
	if t.PR > 0 {
		s += " #" + strconv.Itoa(t.PR)
	}
	return s
}

// UnisolatedLabel is the label of a worker whose steps run without a sandbox
// (agent.UnisolatedLabel: --unsafe-shared-user).
const UnisolatedLabel = "unisolated"

// WorkersTable writes a list of workers; one whose steps run unisolated
// shows it after its state.
func WorkersTable(w io.Writer, workers []wire.Worker, now time.Time) error {
	rows := make([][]string, len(workers))
	for i, x := range workers {
		st := string(x.State)
		if slices.Contains(x.Labels, UnisolatedLabel) {
			// Its steps run as its agent's user: say so where it is listed.
			st += " (unisolated)"
		}
		rows[i] = []string{
			x.ID, x.Pool, st,
			FormatCPU(x.UsedCPUMilli) + "/" + FormatCPU(x.CPUMilli),
			FormatBytes(x.UsedMemory) + "/" + FormatBytes(x.MemoryBytes),
			strconv.Itoa(len(x.Jobs)),
			FormatAgo(x.LastSeen, now),
		}
	}
	return Table(w, []string{"ID", "POOL", "STATE", "CPU", "MEMORY", "JOBS", "LAST SEEN"}, rows)
}

// Summary writes the jobs table of a final run and a line with its state.
func Summary(w io.Writer, r wire.Run) error {
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	if err := JobsTable(w, r.Jobs); err != nil {
		return err
	}
	line := fmt.Sprintf("\nrun %s %s in %s", Text(r.ID), r.State, FormatDuration(r.Duration()))
	if r.Error != "" && r.State != state.RunSucceeded {
		line += ": " + Text(r.Error)
	}
	_, err := fmt.Fprintln(w, line)
	return err
}
