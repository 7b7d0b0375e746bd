// Command cmd runs the mutation check: every entry of scripts/mutations.txt
// (or the list given as argument) is applied in an overlay and its test run;
// it exits 1 if a mutant survives or an entry cannot be run. From the
// repository root: go run ./internal/mutation/cmd [-run NAME-REGEXP] [list].
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/mutation"
)

func main() {
	only := flag.String("run", "", "run only the entries whose name matches this regexp")
	timeout := flag.Duration("timeout", 3*time.Minute, "go test -timeout of each mutant")
	flag.Parse()
	list := "scripts/mutations.txt"
	if flag.NArg() > 0 {
		list = flag.Arg(0)
	}
	if err := run(list, *only, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "mutation:", err)
		os.Exit(1)
	}
}

func run(list, only string, timeout time.Duration) error {
	f, err := os.Open(list)
	if err != nil {
		return err
	}
	defer f.Close()
	muts, err := mutation.Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", list, err)
	}
	var sel *regexp.Regexp
	if only != "" {
		if sel, err = regexp.Compile(only); err != nil {
			return fmt.Errorf("-run: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	var bad []string
	ran := 0
	for _, m := range muts {
		if sel != nil && !sel.MatchString(m.Name) {
			continue
		}
		ran++
		r := mutation.Run(ctx, ".", m, timeout)
		switch {
		case r.Err != nil:
			fmt.Printf("ERROR    %-45s %v\n", m.Name, r.Err)
			if r.Output != "" {
				fmt.Println(indent(r.Output))
			}
			bad = append(bad, m.Name)
		case r.Killed:
			fmt.Printf("killed   %-45s %s: %s (%.1fs)\n", m.Name, m.Package, strings.Join(r.KilledBy, ", "), r.Took.Seconds())
		default:
			fmt.Printf("SURVIVED %-45s %s -run %s (%.1fs)\n", m.Name, m.Package, m.Run, r.Took.Seconds())
			fmt.Printf("         %s: %q -> %q\n", m.File, m.Find, m.Replace)
			bad = append(bad, m.Name)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	fmt.Printf("%d mutants, %d not killed, in %.0fs\n", ran, len(bad), time.Since(start).Seconds())
	if len(bad) > 0 {
		return fmt.Errorf("not killed: %s", strings.Join(bad, "; "))
	}
	return nil
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return "         " + strings.Join(lines, "\n         ")
}
