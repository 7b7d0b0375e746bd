package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// EnvName is the environment variable of a flag: HODEI_DATA_DIR for
// "data-dir".
func EnvName(flagName string) string {
	return "HODEI_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ApplyEnv sets each flag of fs that the command line did not set from its
// HODEI_* variable, when that is set: flags win over the environment. Call
// it after fs.Parse. lookup is os.LookupEnv in practice.
func ApplyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := EnvName(f.Name)
		v, ok := lookup(name)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q in %s: %v", v, name, err))
		}
	})
	return errors.Join(errs...)
}

// PrintFlags writes the flags of fs like flag.PrintDefaults, naming each
// flag's environment variable.
func PrintFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintln(w, line)
		usage = strings.ReplaceAll(usage, "\n", "\n        ")
		extra := "env " + EnvName(f.Name)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			extra = "default " + f.DefValue + "; " + extra
		}
		fmt.Fprintf(w, "        %s (%s)\n", usage, extra)
	})
}

// PipelineErrors writes the problems of an invalid pipeline file, one per
// line, and reports whether err was one. Other errors are not written.
func PipelineErrors(w io.Writer, err error) bool {
	list, ok := yamlpos.AsErrorList(err)
	for _, e := range list {
		fmt.Fprintln(w, e.Error())
	}
	return ok
}

// ErrorDetails lists the problems of an invalid pipeline file as the API
// reports them; ok is false when err is not such a list.
func ErrorDetails(err error) (details []wire.ErrorDetail, ok bool) {
	list, ok := yamlpos.AsErrorList(err)
	for _, e := range list {
		details = append(details, wire.ErrorDetail{File: e.File, Line: e.Line, Column: e.Col, Field: e.Field, Message: e.Msg})
	}
	return details, ok
}

// Parse parses args with fs, allowing flags after positional arguments
// ("submit ci.yaml --follow"); "--" ends the flags. Flags not given are then
// taken from their HODEI_* variables (see ApplyEnv). It returns the
// positional arguments.
func Parse(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if lookup != nil {
		if err := ApplyEnv(fs, lookup); err != nil {
			return nil, err
		}
	}
	return pos, nil
}
