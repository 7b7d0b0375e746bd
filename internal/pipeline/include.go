package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// Limits of include.
const (
	// MaxIncludeDepth bounds how deep includes nest (a file included by
	// the pipeline is at depth 1).
	MaxIncludeDepth = 8
	// MaxIncludes bounds how many files one pipeline includes in all.
	MaxIncludes = 64
)

// Loader reads a file a pipeline includes, by its name: the path of the
// including pipeline's directory joined with the path written in include
// (slash-separated, never holding ..). A file that does not exist is an
// error wrapping fs.ErrNotExist.
type Loader func(name string) ([]byte, error)

// FileLoader reads included files from disk, each within the default
// size limit of pipeline files (max bytes when max > 0).
func FileLoader(max int) Loader {
	return func(name string) ([]byte, error) {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", name)
		}
		return ReadFile(name, f, max)
	}
}

// MapLoader reads included files from files, by name: those a run was
// submitted with (Pipeline.Includes).
func MapLoader(files map[string][]byte) Loader {
	return func(name string) ([]byte, error) {
		data, ok := files[name]
		if !ok {
			return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		return data, nil
	}
}

// includeFields are the fields of an included file (with x- keys).
var includeFields = []string{"include", "jobs"}

// includeItemFields are the fields of an include given as a map.
var includeItemFields = []string{"file"}

// includeRef is one file named by an include.
type includeRef struct {
	name string     // the file's name (see Loader)
	node *yaml.Node // where include names it
	f    string     // the field, for messages
}

// includes reads an include (of the file read by p.Reader, named from):
// a file or a list of files, each a path or {file: path}, relative to the
// including file's directory.
func (p *parser) includes(n *yaml.Node, field, from string) []includeRef {
	var out []includeRef
	for _, item := range p.OneOrList(n, field, "a file or a list of files (include: [ci/common.yaml, {file: ci/deploy.yaml}])") {
		it, f := item.Node, item.Field
		at := it
		if iv := yamlpos.Deref(it); iv.Kind == yaml.MappingNode {
			at = nil
			for _, e := range p.Fields(iv, f, includeItemFields) {
				at = e.Val
				f += ".file"
			}
			if at == nil {
				p.Errorf(it, f+".file", "is required")
				continue
			}
		}
		s, ok := p.Text(at, f)
		if !ok {
			continue
		}
		if msg := includePathProblem(s); msg != "" {
			p.Errorf(at, f, "invalid include %q: %s", s, msg)
			continue
		}
		out = append(out, includeRef{name: path.Join(path.Dir(from), s), node: at, f: f})
	}
	return out
}

// includePathProblem says what is wrong with a path written in include, or
// "" when nothing is: it must be relative and stay under the including
// file's directory.
func includePathProblem(s string) string {
	switch {
	case s == "":
		return "the path is empty"
	case strings.HasPrefix(s, "/") || strings.HasPrefix(s, `\`) || len(s) > 1 && s[1] == ':':
		return "an absolute path; include paths are relative to the including file's directory"
	case slices.Contains(strings.Split(strings.ReplaceAll(s, `\`, "/"), "/"), ".."):
		return "a path with .. leaves the including file's directory; include only files under it"
	case strings.ContainsAny(s, "\x00\n\r"):
		return "the path holds a control character"
	case !strings.HasSuffix(s, ".yaml") && !strings.HasSuffix(s, ".yml"):
		return "an included file is a .yaml or .yml file"
	}
	return ""
}

// includeState is what the includes of one parse have met so far.
type includeState struct {
	load  Loader
	read  map[string][]byte // the files read, by name
	order []string          // their names, in the order read
	// where says, for each job id, the file and line of the job, for
	// the message of a clash.
	where map[string]string
}

// include reads the files refs name, included by the file chain ends
// with, and parses their jobs (and their own includes) into p.
func (p *parser) include(refs []includeRef, chain []string) {
	for _, ref := range refs {
		p.includeOne(ref, chain)
	}
}

func (p *parser) includeOne(ref includeRef, chain []string) {
	from := chain[len(chain)-1]
	switch {
	case p.inc == nil || p.inc.load == nil:
		p.Errorf(ref.node, ref.f, "%s cannot be included: this pipeline was given without the files it includes (hodei run, hodei submit and repositories read them)", ref.name)
		return
	case slices.Contains(chain, ref.name):
		p.Errorf(ref.node, ref.f, "include cycle: %s", strings.Join(append(slices.Clone(chain), ref.name), " -> "))
		return
	case len(chain) > MaxIncludeDepth:
		p.Errorf(ref.node, ref.f, "includes nest more than %d deep: %s", MaxIncludeDepth, strings.Join(append(slices.Clone(chain), ref.name), " -> "))
		return
	}
	if _, done := p.inc.read[ref.name]; done {
		return // included already, by another file: once is enough
	}
	if len(p.inc.read) >= MaxIncludes {
		p.Errorf(ref.node, ref.f, "the pipeline includes more than %d files", MaxIncludes)
		return
	}
	data, err := p.inc.load(ref.name)
	if err != nil {
		var list ErrorList
		switch {
		case errors.Is(err, fs.ErrNotExist):
			p.Errorf(ref.node, ref.f, "included file %s does not exist (paths are relative to the directory of %s)", ref.name, from)
		case errors.As(err, &list) && len(list) > 0:
			p.Errorf(ref.node, ref.f, "included file %s: %s", ref.name, list[0].Msg)
		default:
			p.Errorf(ref.node, ref.f, "included file %s: %v", ref.name, err)
		}
		return
	}
	p.inc.read[ref.name] = data
	p.inc.order = append(p.inc.order, ref.name)

	outer, outerBases := p.Reader, p.bases
	defer func() { p.Reader, p.bases = outer, outerBases }()
	p.Reader = p.Reader.Sub(ref.name, data)
	root := p.Decode(data, "an included file holds jobs", "a file holds one set of jobs")
	if root == nil {
		return
	}
	n := yamlpos.Deref(root)
	if n.Kind != yaml.MappingNode {
		p.Errorf(root, "", "an included file must be a map with jobs, got %s", yamlpos.Describe(n))
		return
	}
	var jobsNode *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := yamlpos.Deref(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == "jobs" {
			jobsNode = yamlpos.Deref(n.Content[i+1])
		}
	}
	// A job of an included file extends the templates of its own file.
	p.templates(n, jobsNode)
	var nested []includeRef
	haveJobs := false
	for _, e := range p.FieldsWithExtensions(n, "", includeFields) {
		switch e.Name {
		case "jobs":
			haveJobs = true
			p.jobList(e.Val)
		case "include":
			nested = p.includes(e.Val, "include", ref.name)
		}
	}
	if !haveJobs && len(nested) == 0 {
		p.Errorf(n, "jobs", "is required in an included file (or include)")
	}
	p.include(nested, append(slices.Clone(chain), ref.name))
}

// jobAt says where a job of that id is defined ("" when none is yet).
func (p *parser) jobAt(id string) string {
	for _, info := range p.jobs {
		if info.job.ID == id {
			file := info.job.File
			if file == "" {
				file = p.main.File
			}
			return fmt.Sprintf("%s:%d", file, info.job.Line)
		}
	}
	return ""
}
