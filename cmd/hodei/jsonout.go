package main

import (
	"encoding/json"
	"flag"
	"io"
	"os"
)

// JSON output. Every command that prints data takes --json and then prints
// the API's wire types (internal/api/wire, or the type the API itself
// serves for that data), never a shape of its own, so that a script can
// read "hodei X --json" and the API's answer alike. A command adopts it in
// two lines:
//
//	asJSON := addJSONFlag(fs)
//	...
//	if *asJSON {
//		return printJSON(v)
//	}
//
// A stream (logs) prints one compact JSON value per line with
// printJSONLine instead.

// addJSONFlag adds --json to a command's flags.
func addJSONFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("json", false, "print JSON (the API's types) instead of text")
}

// printJSON prints v as indented JSON to the standard output and returns
// the command's exit code.
func printJSON(v any) int {
	if err := writeJSON(os.Stdout, v); err != nil {
		return fail("json", err)
	}
	return exitOK
}

// writeJSON writes v to w as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONLine writes v to w as one line of compact JSON (JSON Lines).
func printJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
