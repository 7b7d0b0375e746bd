package pipeline

import (
	"fmt"
	"path"
	"strings"

	"gopkg.in/yaml.v3"
)

// Shells are the shells a step may name, as command templates: {0} is the
// file holding the step's script.
var Shells = map[string]string{
	"sh":      "sh -e {0}",
	"bash":    "bash --noprofile --norc -eo pipefail {0}",
	"python3": "python3 {0}",
}

// ShellCommand returns the command template of a step's shell ("" is sh).
func ShellCommand(shell string) string {
	if shell == "" {
		shell = "sh"
	}
	if t, ok := Shells[shell]; ok {
		return t
	}
	return shell
}

// shell reads a step's shell: a name of Shells or a template with {0}.
func (p *parser) shell(n *yaml.Node, field string) string {
	s, ok := p.Text(n, field)
	if !ok {
		return ""
	}
	if _, known := Shells[s]; known {
		return s
	}
	if !strings.Contains(s, "{0}") {
		p.Errorf(n, field, "unknown shell %q: use sh, bash, python3, or a command with {0} for the script's file (like \"perl {0}\")", s)
		return ""
	}
	if len(strings.Fields(s)) == 0 || strings.HasPrefix(strings.TrimSpace(s), "{0}") {
		p.Errorf(n, field, "a shell template starts with a command, like \"perl {0}\"")
		return ""
	}
	return s
}

// workingDirectory reads a step's working directory: a relative path that
// stays inside the workspace.
func (p *parser) workingDirectory(n *yaml.Node, field string) string {
	s, ok := p.Text(n, field)
	if !ok {
		return ""
	}
	if err := CheckWorkingDirectory(s); err != nil {
		p.Errorf(n, field, "%v", err)
		return ""
	}
	return path.Clean(s)
}

// CheckWorkingDirectory refuses a working directory that is absolute or
// leaves the workspace.
func CheckWorkingDirectory(s string) error {
	switch c := path.Clean(s); {
	case s == "":
		return fmt.Errorf("must not be empty")
	case path.IsAbs(s):
		return fmt.Errorf("%q is absolute: a working directory is relative to the workspace", s)
	case c == ".." || strings.HasPrefix(c, "../"):
		return fmt.Errorf("%q leaves the workspace", s)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("must not contain NUL")
	}
	return nil
}
