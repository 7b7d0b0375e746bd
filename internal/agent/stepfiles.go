package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hodei-ci/hodei/internal/pipeline"
)

// maxEnvFile bounds what a step may write to $HODEI_ENV.
const maxEnvFile = 1 << 20

// envFileName and outputFileName are the names of the $HODEI_ENV and
// $HODEI_OUTPUT files in a job's private directory.
const (
	envFileName    = "hodei-env"
	outputFileName = "hodei-output"
)

// stepFiles are the files the agent shares with the steps of one attempt,
// in a directory only the attempt can see (its private /tmp, or for a
// container its workspace): the $HODEI_ENV and $HODEI_OUTPUT files and the
// scripts of steps that name a shell or a working directory.
type stepFiles struct {
	host string // the directory on the agent's side
	step string // the same directory as the steps see it
	uid  int    // owner of what a step writes; -1: the agent's user
}

// envPath is $HODEI_ENV as the steps see it.
func (f stepFiles) envPath() string { return filepath.Join(f.step, envFileName) }

// outputPath is $HODEI_OUTPUT as the steps see it.
func (f stepFiles) outputPath() string { return filepath.Join(f.step, outputFileName) }

// resetEnv makes the env and output files empty and writable by the step.
// Whatever a step left at their names (a link, a directory) is removed
// first.
func (f stepFiles) resetEnv() error {
	for _, name := range []string{envFileName, outputFileName} {
		if err := f.reset(name); err != nil {
			return err
		}
	}
	return nil
}

func (f stepFiles) reset(name string) error {
	p := filepath.Join(f.host, name)
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	fd, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer fd.Close()
	if f.uid >= 0 {
		if err := fd.Chown(f.uid, f.uid); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// readEnv reads what the last step appended to the env file.
func (f stepFiles) readEnv() (map[string]string, error) {
	return f.readVars(envFileName, "$HODEI_ENV")
}

// readOutput reads what the last step appended to the output file.
func (f stepFiles) readOutput() (map[string]string, error) {
	return f.readVars(outputFileName, "$HODEI_OUTPUT")
}

// readVars reads a file of variables a step appended to (label names it
// in messages). The file is opened without following links and must be a
// regular file with a single link: the agent never reads, on a step's
// behalf, a file the step could not read itself.
func (f stepFiles) readVars(name, label string) (map[string]string, error) {
	fd, err := os.OpenFile(filepath.Join(f.host, name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !fi.Mode().IsRegular() || ok && st.Nlink != 1 {
		return nil, fmt.Errorf("%s: not a regular file", label)
	}
	data, err := io.ReadAll(io.LimitReader(fd, maxEnvFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if len(data) > maxEnvFile {
		return nil, fmt.Errorf("%s: more than %d bytes", label, maxEnvFile)
	}
	return parseVarFile(label, data)
}

// parseEnvFile parses a $HODEI_ENV file (see parseVarFile).
func parseEnvFile(data []byte) (map[string]string, error) {
	return parseVarFile("$HODEI_ENV", data)
}

// parseVarFile reads NAME=VALUE lines and NAME<<DELIMITER blocks (the
// value is the lines up to one that is DELIMITER). Empty lines are
// skipped; a name written twice keeps its last value.
func parseVarFile(label string, data []byte) (map[string]string, error) {
	out := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), maxEnvFile+1)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		heredoc := false
		if i := strings.Index(line, "<<"); i >= 0 && (!ok || i < len(name)) {
			name, value, heredoc = line[:i], line[i+2:], true
		} else if !ok {
			return nil, fmt.Errorf("%s line %d: want NAME=VALUE or NAME<<DELIMITER", label, n)
		}
		if err := checkEnvName(name); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", label, n, err)
		}
		if heredoc {
			delim := value
			if delim == "" {
				return nil, fmt.Errorf("%s line %d: %s<< needs a delimiter", label, n, name)
			}
			var lines []string
			closed := false
			for sc.Scan() {
				n++
				l := strings.TrimSuffix(sc.Text(), "\r")
				if l == delim {
					closed = true
					break
				}
				lines = append(lines, l)
			}
			if !closed {
				return nil, fmt.Errorf("%s: the value of %s is not ended by a line %s", label, name, delim)
			}
			value = strings.Join(lines, "\n")
		}
		out[name] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	return out, nil
}

// checkEnvName refuses names that are not variable names and those Hodei
// sets itself.
func checkEnvName(name string) error {
	if name == "" {
		return errors.New("empty variable name")
	}
	for i, c := range name {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return fmt.Errorf("invalid variable name %q", name)
		}
	}
	if strings.HasPrefix(name, "HODEI_") {
		return fmt.Errorf("%s: names starting with HODEI_ are reserved for Hodei", name)
	}
	return nil
}

// script is what the step's `sh -e -c` runs. A step with the default shell
// and no working directory runs its script as it is; otherwise the script
// is written to a file and run from the working directory by its shell.
// done removes the file.
func (f stepFiles) script(i int, st pipeline.StepSpec) (script string, done func(), err error) {
	if st.Shell == "" && st.WorkingDirectory == "" {
		return st.Run, func() {}, nil
	}
	name := "hodei-step-" + strconv.Itoa(i+1)
	host := filepath.Join(f.host, name)
	_ = os.RemoveAll(host)
	if err := os.WriteFile(host, []byte(st.Run), 0o644); err != nil {
		return "", nil, fmt.Errorf("step script: %w", err)
	}
	done = func() { _ = os.Remove(host) }
	cmd := strings.ReplaceAll(pipeline.ShellCommand(st.Shell), "{0}", shellQuote(filepath.Join(f.step, name)))
	var b strings.Builder
	if st.WorkingDirectory != "" {
		if err := pipeline.CheckWorkingDirectory(st.WorkingDirectory); err != nil {
			done()
			return "", nil, fmt.Errorf("working-directory: %w", err)
		}
		b.WriteString("cd -- " + shellQuote(st.WorkingDirectory) + "\n")
	}
	b.WriteString("exec " + cmd + "\n")
	return b.String(), done, nil
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// expandVars replaces $NAME and ${NAME} in s by their values in env; $$ is
// a $. A name env does not hold is left as written, since the agent does
// not know every variable a step will have (an image's own, for one).
func expandVars(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		if s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		name, end := "", i+1
		if s[i+1] == '{' {
			if j := strings.IndexByte(s[i+2:], '}'); j >= 0 {
				name, end = s[i+2:i+2+j], i+3+j
			}
		} else {
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || j > i+1 && s[j] >= '0' && s[j] <= '9') {
				j++
			}
			name, end = s[i+1:j], j
		}
		v, ok := env[name]
		if name == "" || !ok {
			b.WriteByte(c)
			continue
		}
		b.WriteString(v)
		i = end - 1
	}
	return b.String()
}

// expandEnv returns layer with $VAR expanded from base.
func expandEnv(layer, base map[string]string) map[string]string {
	if len(layer) == 0 {
		return layer
	}
	out := make(map[string]string, len(layer))
	for k, v := range layer {
		out[k] = expandVars(v, base)
	}
	return out
}
