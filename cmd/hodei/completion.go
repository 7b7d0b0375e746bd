package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/client"
)

// runIDsTimeout bounds "hodei completion run-ids": a server that does not
// answer must not hang the shell.
const runIDsTimeout = 2 * time.Second

func completionCmd(args []string) int {
	fs := flags("completion", "bash|zsh|fish|run-ids [flags]", `
Print a shell completion script for hodei: it completes commands,
subcommands, flags and, for runs, logs and cancel, the ids of the latest runs
of the server (--server, or $HODEI_SERVER, on the command line being
completed; nothing when no server answers). The scripts are generated from
the commands themselves: load them again after an upgrade.

  bash:  source <(hodei completion bash)                  (in ~/.bashrc)
  zsh:   source <(hodei completion zsh)                   (in ~/.zshrc, after compinit)
         or: hodei completion zsh > "${fpath[1]}/_hodei"
  fish:  hodei completion fish > ~/.config/fish/completions/hodei.fish

"hodei completion run-ids" prints the ids of the server's latest runs, one a
line: what the scripts call.`)
	server := addServerFlag(fs)
	limit := fs.Int("limit", 50, "with run-ids: most ids printed")
	pos, code, ok := parseArgs(fs, args, 1, "want one of bash, zsh, fish or run-ids")
	if !ok {
		return code
	}
	var gen func(io.Writer, []*cmdSpec) error
	switch pos[0] {
	case "bash":
		gen = writeBashCompletion
	case "zsh":
		gen = writeZshCompletion
	case "fish":
		gen = writeFishCompletion
	case "run-ids":
		return completeRunIDs(fs, *server, *limit)
	default:
		return usageError(fs, "unknown shell %q: want bash, zsh or fish", pos[0])
	}
	if err := gen(os.Stdout, describeCommands()); err != nil {
		return fail("completion", err)
	}
	return exitOK
}

// completeRunIDs prints the ids of the latest runs, one a line. It is
// silent on every failure: a completion must not write into the line being
// edited.
func completeRunIDs(fs *flag.FlagSet, server string, limit int) int {
	hc, err := apiHTTPClient(fs)
	if err != nil {
		return exitFailed
	}
	c, err := client.New(server, hc)
	if err != nil {
		return exitFailed
	}
	c.SetToken(clientToken(server))
	ctx, cancel := context.WithTimeout(context.Background(), runIDsTimeout)
	defer cancel()
	l, err := c.ListRuns(ctx, client.ListOptions{Limit: limit})
	if err != nil {
		return exitFailed
	}
	for _, r := range l.Runs {
		fmt.Println(r.ID)
	}
	return exitOK
}

// completionNode is a command of the tree with its path ("token create";
// "" for hodei itself).
type completionNode struct {
	path string
	spec *cmdSpec
}

// completionTree lists hodei itself, then every command and subcommand.
func completionTree(cmds []*cmdSpec) []completionNode {
	root := &cmdSpec{Subs: cmds}
	var out []completionNode
	var walk func(path string, s *cmdSpec)
	walk = func(path string, s *cmdSpec) {
		out = append(out, completionNode{path, s})
		for _, c := range s.Subs {
			walk(strings.TrimSpace(path+" "+c.Name), c)
		}
	}
	walk("", root)
	return out
}

func (s *cmdSpec) subNames() []string {
	var out []string
	for _, c := range s.Subs {
		out = append(out, c.Name)
	}
	return out
}

func (s *cmdSpec) flagNames(valueOnly bool) []string {
	var out []string
	for _, f := range s.Flags {
		if f.Value || !valueOnly {
			out = append(out, "--"+f.Name)
		}
	}
	return out
}

// argWords encodes the positional arguments for the scripts: one word
// each ("run", "file", "w:bash,zsh,fish" or "-"), and "..." after the last
// when it repeats.
func (s *cmdSpec) argWords() []string {
	var out []string
	for _, a := range s.Args {
		switch a.Kind {
		case argWords:
			out = append(out, "w:"+strings.Join(a.Words, ","))
		case "":
			out = append(out, "-")
		default:
			out = append(out, a.Kind)
		}
	}
	if n := len(s.Args); n > 0 && s.Args[n-1].Repeat {
		out = append(out, "...")
	}
	return out
}

// shellCases writes the branches of a "case" of a shell function: one a
// command path whose words are not empty.
func shellCases(w io.Writer, tree []completionNode, words func(*cmdSpec) []string, branch func(path string, words []string) string) {
	for _, n := range tree {
		if ws := words(n.spec); len(ws) > 0 {
			fmt.Fprint(w, branch(n.path, ws))
		}
	}
}

// shQuote quotes s for sh, bash and zsh.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// fishQuote quotes s for fish.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// The walk over the words before the cursor, the same in each script: a
// word starting with "-" is a flag, and a flag that takes a value (and has
// no "=") takes the next word too; otherwise, before any positional
// argument, a word naming a subcommand of the command so far extends the
// command's path; any other word is a positional argument.

func writeBashCompletion(w io.Writer, cmds []*cmdSpec) error {
	tree := completionTree(cmds)
	var b strings.Builder
	b.WriteString(`# bash completion for hodei. Generated by "hodei completion bash" from the
# commands of that binary; load it with: source <(hodei completion bash)

_hodei_subs() {
  case "$1" in
`)
	bashCase := func(path string, ws []string) string {
		return fmt.Sprintf("    %s) echo %s ;;\n", shQuote(path), shQuote(strings.Join(ws, " ")))
	}
	shellCases(&b, tree, (*cmdSpec).subNames, bashCase)
	b.WriteString("  esac\n}\n\n_hodei_flags() {\n  case \"$1\" in\n")
	shellCases(&b, tree, func(s *cmdSpec) []string { return s.flagNames(false) }, bashCase)
	b.WriteString("  esac\n}\n\n_hodei_value_flags() {\n  case \"$1\" in\n")
	shellCases(&b, tree, func(s *cmdSpec) []string { return s.flagNames(true) }, bashCase)
	b.WriteString("  esac\n}\n\n_hodei_args() {\n  case \"$1\" in\n")
	shellCases(&b, tree, (*cmdSpec).argWords, bashCase)
	b.WriteString(`  esac
}

# _hodei_run_ids asks the server of the line (its --server and --ca) for
# the ids of its latest runs.
_hodei_run_ids() {
  local i w opts=()
  for (( i = 1; i < ${#COMP_WORDS[@]}; i++ )); do
    w=${COMP_WORDS[i]}
    case "$w" in
      --server|-server|--ca|-ca) opts+=("$w" "${COMP_WORDS[i+1]}") ;;
      --server=*|-server=*|--ca=*|-ca=*) opts+=("$w") ;;
    esac
  done
  "${COMP_WORDS[0]}" completion run-ids "${opts[@]}" 2>/dev/null
}

_hodei() {
  local cur=${COMP_WORDS[COMP_CWORD]} cmdpath="" npos=0 i=1 w name
  COMPREPLY=()
  while (( i < COMP_CWORD )); do
    w=${COMP_WORDS[i]}
    if [[ $w == -* ]]; then
      name=${w#-}; name=--${name#-}
      if [[ $w != *=* && " $(_hodei_value_flags "$cmdpath") " == *" $name "* ]]; then
        if (( i + 1 == COMP_CWORD )); then
          COMPREPLY=($(compgen -f -- "$cur"))
          return
        fi
        (( i++ ))
      fi
    elif (( npos == 0 )) && [[ " $(_hodei_subs "$cmdpath") " == *" $w "* ]]; then
      cmdpath=${cmdpath:+$cmdpath }$w
    else
      (( npos++ ))
    fi
    (( i++ ))
  done
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_hodei_flags "$cmdpath")" -- "$cur"))
    return
  fi
  local subs
  subs=$(_hodei_subs "$cmdpath")
  if [[ -n $subs ]] && (( npos == 0 )); then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    return
  fi
  local kinds=($(_hodei_args "$cmdpath")) kind=""
  if (( npos < ${#kinds[@]} )) && [[ ${kinds[npos]} != "..." ]]; then
    kind=${kinds[npos]}
  elif (( ${#kinds[@]} > 1 )) && [[ ${kinds[-1]} == "..." ]]; then
    kind=${kinds[-2]}
  fi
  case "$kind" in
    run) COMPREPLY=($(compgen -W "$(_hodei_run_ids)" -- "$cur")) ;;
    file) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null ;;
    w:*) w=${kind#w:}; COMPREPLY=($(compgen -W "${w//,/ }" -- "$cur")) ;;
  esac
  return 0
}

complete -F _hodei hodei
`)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeZshCompletion(w io.Writer, cmds []*cmdSpec) error {
	tree := completionTree(cmds)
	var b strings.Builder
	b.WriteString(`#compdef hodei
# zsh completion for hodei. Generated by "hodei completion zsh" from the
# commands of that binary. Load it with "source <(hodei completion zsh)"
# after compinit, or save it as _hodei in a directory of $fpath.

# Lines "name:description".
_hodei_subs() {
  case "$1" in
`)
	described := func(path string, ws []string) string {
		return fmt.Sprintf("    %s) print -rl -- %s ;;\n", shQuote(path), strings.Join(ws, " "))
	}
	shellCases(&b, tree, func(s *cmdSpec) []string {
		var out []string
		for _, c := range s.Subs {
			out = append(out, shQuote(c.Name+":"+strings.ReplaceAll(c.Summary, ":", `\:`)))
		}
		return out
	}, described)
	b.WriteString("  esac\n}\n\n_hodei_flags() {\n  case \"$1\" in\n")
	shellCases(&b, tree, func(s *cmdSpec) []string {
		var out []string
		for _, f := range s.Flags {
			out = append(out, shQuote("--"+f.Name+":"+strings.ReplaceAll(f.Usage, ":", `\:`)))
		}
		return out
	}, described)
	plain := func(path string, ws []string) string {
		return fmt.Sprintf("    %s) print -r -- %s ;;\n", shQuote(path), shQuote(strings.Join(ws, " ")))
	}
	b.WriteString("  esac\n}\n\n_hodei_value_flags() {\n  case \"$1\" in\n")
	shellCases(&b, tree, func(s *cmdSpec) []string { return s.flagNames(true) }, plain)
	b.WriteString("  esac\n}\n\n_hodei_args() {\n  case \"$1\" in\n")
	shellCases(&b, tree, (*cmdSpec).argWords, plain)
	b.WriteString(`  esac
}

_hodei_run_ids() {
  local i opts=()
  for (( i = 2; i <= ${#words}; i++ )); do
    case "${words[i]}" in
      --server|-server|--ca|-ca) opts+=("${words[i]}" "${words[i+1]}") ;;
      --server=*|-server=*|--ca=*|-ca=*) opts+=("${words[i]}") ;;
    esac
  done
  ${~words[1]} completion run-ids "${opts[@]}" 2>/dev/null
}

_hodei() {
  local cur=${words[CURRENT]} cmdpath="" w name kind
  local -i npos=0 i=2
  local -a subs flags kinds ids
  while (( i < CURRENT )); do
    w=${words[i]}
    if [[ $w == -* ]]; then
      name=${w#-}; name=--${name#-}
      if [[ $w != *=* && " $(_hodei_value_flags "$cmdpath") " == *" $name "* ]]; then
        if (( i + 1 == CURRENT )); then
          _files
          return
        fi
        (( i++ ))
      fi
    elif (( npos == 0 )) && [[ -n ${(M)${(f)"$(_hodei_subs "$cmdpath")"}:#${w}:*} ]]; then
      cmdpath=${cmdpath:+$cmdpath }$w
    else
      (( npos++ ))
    fi
    (( i++ ))
  done
  if [[ $cur == -* ]]; then
    flags=(${(f)"$(_hodei_flags "$cmdpath")"})
    _describe -t flags 'flag' flags
    return
  fi
  subs=(${(f)"$(_hodei_subs "$cmdpath")"})
  if (( ${#subs} && npos == 0 )); then
    _describe -t commands 'command' subs
    return
  fi
  kinds=(${=$(_hodei_args "$cmdpath")})
  kind=""
  if (( npos < ${#kinds} )) && [[ ${kinds[npos+1]} != "..." ]]; then
    kind=${kinds[npos+1]}
  elif (( ${#kinds} > 1 )) && [[ ${kinds[-1]} == "..." ]]; then
    kind=${kinds[-2]}
  fi
  case "$kind" in
    run) ids=(${(f)"$(_hodei_run_ids)"}); compadd -a ids ;;
    file) _files ;;
    w:*) compadd -- ${(s:,:)kind#w:} ;;
  esac
}

if [[ $funcstack[1] == _hodei ]]; then
  _hodei "$@"
else
  compdef _hodei hodei
fi
`)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeFishCompletion(w io.Writer, cmds []*cmdSpec) error {
	tree := completionTree(cmds)
	var b strings.Builder
	b.WriteString(`# fish completion for hodei. Generated by "hodei completion fish" from the
# commands of that binary; save it as ~/.config/fish/completions/hodei.fish.

function __hodei_subs
    switch "$argv[1]"
`)
	fishCase := func(path string, ws []string) string {
		q := make([]string, len(ws))
		for i, x := range ws {
			q[i] = fishQuote(x)
		}
		return fmt.Sprintf("        case %s\n            printf '%%s\\n' %s\n", fishQuote(path), strings.Join(q, " "))
	}
	shellCases(&b, tree, (*cmdSpec).subNames, fishCase)
	b.WriteString("    end\nend\n\nfunction __hodei_value_flags\n    switch \"$argv[1]\"\n")
	shellCases(&b, tree, func(s *cmdSpec) []string { return s.flagNames(true) }, fishCase)
	b.WriteString(`    end
end

# __hodei_state prints the command path of the line and how many
# positional arguments it has before the cursor.
function __hodei_state
    set -l toks (commandline -opc)
    set -l cmdpath ''
    set -l npos 0
    set -l skip 0
    for w in $toks[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        if string match -q -- '-*' $w
            set -l name --(string replace -r -- '^--?' '' $w)
            if not string match -q -- '*=*' $w; and contains -- $name (__hodei_value_flags "$cmdpath")
                set skip 1
            end
        else if test $npos = 0; and contains -- $w (__hodei_subs "$cmdpath")
            set cmdpath (string trim -- "$cmdpath $w")
        else
            set npos (math $npos + 1)
        end
    end
    printf '%s\n' "$cmdpath" $npos
end

# __hodei_at PATH [N|N+]: the line is at command PATH, before any positional
# argument, or (with N) at its positional argument N (N+: N or later).
function __hodei_at
    set -l st (__hodei_state)
    test "$st[1]" = "$argv[1]"; or return 1
    set -l n 0
    set -q argv[2]; and set n $argv[2]
    if string match -q -- '*+' $n
        test $st[2] -ge (string trim -c + -- $n)
    else
        test $st[2] = $n
    end
end

function __hodei_run_ids
    set -l toks (commandline -opc)
    set -l opts
    for i in (seq 2 (count $toks))
        switch $toks[$i]
            case --server -server --ca -ca
                set -a opts $toks[$i] $toks[(math $i + 1)]
            case '--server=*' '-server=*' '--ca=*' '-ca=*'
                set -a opts $toks[$i]
        end
    end
    $toks[1] completion run-ids $opts 2>/dev/null
end

complete -c hodei -f
`)
	for _, n := range tree {
		at := fishQuote("__hodei_at " + fishQuote(n.path))
		for _, c := range n.spec.Subs {
			fmt.Fprintf(&b, "complete -c hodei -n %s -a %s -d %s\n", at, fishQuote(c.Name), fishQuote(c.Summary))
		}
		in := fishQuote("test (__hodei_state)[1] = " + fishQuote(n.path))
		for _, f := range n.spec.Flags {
			value := ""
			if f.Value {
				value = " -r -F"
			}
			fmt.Fprintf(&b, "complete -c hodei -n %s -l %s%s -d %s\n", in, fishQuote(f.Name), value, fishQuote(f.Usage))
		}
		for i, a := range n.spec.Args {
			pos := fmt.Sprint(i)
			if a.Repeat && i == len(n.spec.Args)-1 {
				pos += "+"
			}
			cond := fishQuote("__hodei_at " + fishQuote(n.path) + " " + pos)
			switch a.Kind {
			case argRun:
				fmt.Fprintf(&b, "complete -c hodei -n %s -a '(__hodei_run_ids)'\n", cond)
			case argFile:
				fmt.Fprintf(&b, "complete -c hodei -n %s -F\n", cond)
			case argWords:
				fmt.Fprintf(&b, "complete -c hodei -n %s -a %s\n", cond, fishQuote(strings.Join(a.Words, " ")))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
