package pipeline

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// Input is a value a run is given when it is made, declared under
// `inputs:`; it is read as ${{ inputs.NAME }} and as the variable
// HODEI_INPUT_NAME (upper-cased) of every job.
type Input struct {
	Name        string
	Type        InputType
	Options     []string // of a choice
	Required    bool
	Default     string
	HasDefault  bool
	Description string
}

// InputType is the type of an input.
type InputType string

// Input types.
const (
	InputString  InputType = "string"
	InputBoolean InputType = "boolean"
	InputNumber  InputType = "number"
	InputChoice  InputType = "choice"
)

var (
	inputFields = []string{"type", "description", "required", "default", "options"}
	inputTypes  = []string{string(InputString), string(InputBoolean), string(InputNumber), string(InputChoice)}
)

// InputEnv is the name of the variable that holds an input in jobs.
func InputEnv(name string) string { return "HODEI_INPUT_" + strings.ToUpper(name) }

// inputs reads the pipeline's inputs.
func (p *parser) inputs(n *yaml.Node, field string) []Input {
	v, ok := p.Map(n, field, "a map of input names to their type, default and options")
	if !ok {
		return nil
	}
	var out []Input
	envNames := make(map[string]string)
	for _, e := range p.Entries(v, field) {
		f := field + "." + e.Name
		if !envNamePattern.MatchString(e.Name) {
			p.Errorf(e.Key, f, "invalid input name %q: must start with a letter or _ and hold only letters, digits and _ (it becomes the variable %s)", e.Name, InputEnv("NAME"))
			continue
		}
		if other, dup := envNames[InputEnv(e.Name)]; dup {
			p.Errorf(e.Key, f, "inputs %q and %q both become the variable %s; rename one", other, e.Name, InputEnv(e.Name))
			continue
		}
		envNames[InputEnv(e.Name)] = e.Name
		in := Input{Name: e.Name, Type: InputString}
		m, ok := p.Map(e.Val, f, "a map with type, description, required, default and options")
		if !ok {
			out = append(out, in)
			continue
		}
		var defNode, optNode *yaml.Node
		for _, g := range p.Fields(m, f, inputFields) {
			gp := f + "." + g.Name
			switch g.Name {
			case "type":
				if s, ok := p.Text(g.Val, gp); ok {
					if !slices.Contains(inputTypes, s) {
						p.Errorf(g.Val, gp, "unknown input type %q%s (types: %s)", s, yamlpos.DidYouMean(s, inputTypes), strings.Join(inputTypes, ", "))
					} else {
						in.Type = InputType(s)
					}
				}
			case "description":
				in.Description, _ = p.Text(g.Val, gp)
			case "required":
				in.Required, _ = p.Bool(g.Val, gp)
			case "default":
				defNode = g.Val
				if s, ok := p.Scalar(g.Val, gp); ok {
					in.Default, in.HasDefault = s, true
				}
			case "options":
				optNode = g.Val
				in.Options = p.options(g.Val, gp)
			}
		}
		switch {
		case in.Type == InputChoice && optNode == nil:
			p.Errorf(e.Val, f+".options", "is required for a choice: list the values it may take")
		case in.Type != InputChoice && optNode != nil:
			p.Errorf(optNode, f+".options", "only applies to an input of type choice")
		}
		if in.HasDefault {
			if _, err := in.check(in.Default); err != nil {
				p.Errorf(defNode, f+".default", "%v", err)
			}
		}
		out = append(out, in)
	}
	return out
}

// options reads the values of a choice.
func (p *parser) options(n *yaml.Node, field string) []string {
	v := yamlpos.Deref(n)
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		p.Errorf(n, field, "must be a non-empty list of values, got %s", yamlpos.Describe(v))
		return nil
	}
	var out []string
	for i, it := range v.Content {
		s, ok := p.Scalar(it, yamlpos.Index(field, i))
		if !ok {
			continue
		}
		if slices.Contains(out, s) {
			p.Errorf(it, yamlpos.Index(field, i), "duplicate option %q", s)
			continue
		}
		out = append(out, s)
	}
	return out
}

// check validates a value given for the input and returns it in its
// canonical form (true/false for a boolean).
func (in Input) check(s string) (string, error) {
	switch in.Type {
	case InputBoolean:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return "", fmt.Errorf("%q is not a boolean: give true or false", s)
		}
		return strconv.FormatBool(b), nil
	case InputNumber:
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return "", fmt.Errorf("%q is not a number", s)
		}
	case InputChoice:
		if !slices.Contains(in.Options, s) {
			return "", fmt.Errorf("%q is not one of the options: %s", s, strings.Join(in.Options, ", "))
		}
	}
	return s, nil
}

// value is the input's value as expressions read it: a bool, a number or
// a string.
func (in Input) value(s string) any {
	switch in.Type {
	case InputBoolean:
		return s == "true"
	case InputNumber:
		f, err := strconv.ParseFloat(s, 64)
		if err == nil {
			return f
		}
	}
	return s
}

// InputError is one problem with the inputs given to a run.
type InputError struct {
	Input string // "" when the problem is not about one input
	Msg   string
}

func (e *InputError) Error() string {
	if e.Input == "" {
		return "inputs: " + e.Msg
	}
	return "input " + e.Input + ": " + e.Msg
}

// InputErrors is every problem with the inputs given to a run.
type InputErrors []*InputError

func (l InputErrors) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// ResolveInputs checks the values given to a run against the pipeline's
// inputs and returns every input's value: the one given, else the
// default; an input neither given nor defaulted is absent (it reads as
// null and its variable is not set). On failure the error is InputErrors,
// naming every unknown input, missing required one and bad value.
func ResolveInputs(p *Pipeline, given map[string]string) (map[string]string, error) {
	var errs InputErrors
	declared := make(map[string]Input, len(p.Inputs))
	var names []string
	for _, in := range p.Inputs {
		declared[in.Name] = in
		names = append(names, in.Name)
	}
	for _, k := range sortedKeys(given) {
		if _, ok := declared[k]; ok {
			continue
		}
		msg := "the pipeline declares no inputs"
		if len(names) > 0 {
			msg = "unknown input" + yamlpos.DidYouMean(k, names) + "; the pipeline's inputs are " + strings.Join(names, ", ")
		}
		errs = append(errs, &InputError{Input: k, Msg: msg})
	}
	out := make(map[string]string, len(p.Inputs))
	for _, in := range p.Inputs {
		s, ok := given[in.Name]
		switch {
		case ok:
			v, err := in.check(s)
			if err != nil {
				errs = append(errs, &InputError{Input: in.Name, Msg: err.Error()})
				continue
			}
			out[in.Name] = v
		case in.HasDefault:
			v, _ := in.check(in.Default)
			out[in.Name] = v
		case in.Required:
			hint := ""
			if len(in.Options) > 0 {
				hint = " (one of " + strings.Join(in.Options, ", ") + ")"
			}
			errs = append(errs, &InputError{Input: in.Name, Msg: fmt.Sprintf("is required: give it with --input %s=VALUE%s", in.Name, hint)})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// ParseInputFlags reads KEY=VALUE arguments (of --input) into a map; a
// key given twice is an error.
func ParseInputFlags(args []string) (map[string]string, error) {
	out := make(map[string]string, len(args))
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--input %q: want NAME=VALUE", a)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--input %s is given twice", k)
		}
		out[k] = v
	}
	return out, nil
}
