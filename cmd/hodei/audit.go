package main

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/hodei-ci/hodei/internal/api"
	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/cli"
	"github.com/hodei-ci/hodei/internal/server"
)

const auditUsage = `Usage: hodei audit verify|query [flags]

Hodei's audit trail records every authorization decision of the API (who,
what action, which resource, allow or deny, when, from where, and the
request id), in a hash-chained file of the data directory.

  hodei audit verify [--data-dir DIR | --file FILE] [--head SEQ:HASH]
                     check the chain; name the first record changed, removed or moved
  hodei audit query  [--principal P] [--action A] [--resource R] [--decision D]
                     [--since T] [--until T] [--limit N]
                     search the trail through the API (administrators only)
`

func auditCmd(args []string) int {
	return runSubUsage("audit", auditUsage, args, []sub{{"verify", auditVerify}, {"query", auditQuery}})
}

func auditVerify(args []string) int {
	fs := flags("audit verify", "[--data-dir DIR | --file FILE] [--head SEQ:HASH]", `
Verify the audit trail's hash chain: every record's hash matches its
content, every record names the hash of the one before it, and the sequence
numbers follow each other. The first record that does not fit is named by
its sequence number and line; the exit status is then 1.

The file alone cannot show that records were cut off its end: give the head
printed by an earlier verify (kept somewhere else) with --head, and verify
checks that record is still there, unchanged.

Example:
  hodei audit verify --data-dir /var/lib/hodei --head 18231:5be0…`)
	dataDir := fs.String("data-dir", "./hodei-data", "the server's data directory")
	file := fs.String("file", "", "the audit file (default: DATA-DIR/audit/audit.jsonl)")
	head := fs.String("head", "", "a head recorded earlier, SEQ:HASH")
	asJSON := addJSONFlag(fs)
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	path := *file
	if path == "" {
		path = server.AuditPath(*dataDir)
	}
	var o audit.VerifyOptions
	if *head != "" {
		seq, hash, ok := strings.Cut(*head, ":")
		n, err := strconv.ParseInt(seq, 10, 64)
		if !ok || err != nil || n < 1 || len(hash) != 64 {
			return usageError(fs, "--head %q: want SEQ:HASH (as verify prints it)", *head)
		}
		o.HeadSeq, o.HeadHash = n, hash
	}
	rep, err := audit.Verify(path, o)
	if *asJSON {
		out := auditVerification{File: path, OK: err == nil, Report: rep}
		if err != nil {
			out.Error, out.Tampered = err.Error(), audit.IsProblem(err)
		}
		if code := printJSON(out); code != exitOK || err == nil {
			return code
		}
		return exitFailed
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hodei audit verify: %s: %v\n", path, err)
		if audit.IsProblem(err) {
			fmt.Fprintln(os.Stderr, "the audit trail has been tampered with (or damaged) at that record")
		}
		return exitFailed
	}
	switch {
	case rep.Records == 0 && rep.AnchorSeq == 0:
		fmt.Printf("%s: empty, nothing to verify\n", path)
	default:
		fmt.Printf("%s: %d records verified", path, rep.Records)
		if rep.Records > 0 {
			fmt.Printf(" (seq %d to %d)", rep.FirstSeq, rep.LastSeq)
		}
		if rep.AnchorSeq > 0 {
			fmt.Printf(", after the anchor of the records pruned up to seq %d", rep.AnchorSeq)
		}
		fmt.Printf("\nhead %d:%s\n", rep.LastSeq, rep.LastHash)
	}
	return exitOK
}

// auditVerification is the result of "hodei audit verify --json": the
// report's fields, and on failure the error and whether it is a problem of
// the trail (tampering or damage) rather than, say, an unreadable file.
type auditVerification struct {
	File string `json:"file"`
	OK   bool   `json:"ok"`
	audit.Report
	Error    string `json:"error,omitempty"`
	Tampered bool   `json:"tampered,omitempty"`
}

func auditQuery(args []string) int {
	fs := flags("audit query", "[flags]", `
Search the audit trail of a server. Times are RFC 3339 ("2025-03-01T12:00:00Z")
or a duration before now ("24h", "7d"). The most recent --limit matches are
printed, oldest first.

Examples:
  hodei audit query --principal alice --since 24h
  hodei audit query --resource 0194d2a9f3c0000a1b2 --decision deny`)
	server := addServerFlag(fs)
	principal := fs.String("principal", "", "principal id (user:…, token:…) or name")
	action := fs.String("action", "", "action (submit, read, cancel, authenticate, ...)")
	resource := fs.String("resource", "", `resource: a run id, or an entity uid such as Run::"…"`)
	decision := fs.String("decision", "", "allow or deny")
	since := fs.String("since", "", "from this time")
	until := fs.String("until", "", "before this time")
	limit := fs.Int("limit", 100, "most records printed (1-10000)")
	asJSON := addJSONFlag(fs)
	c, code, ok := clientNoArgs(fs, args, server)
	if !ok {
		return code
	}
	q := url.Values{}
	for k, v := range map[string]string{"principal": *principal, "action": *action, "resource": *resource,
		"decision": *decision, "since": *since, "until": *until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("limit", strconv.Itoa(*limit))
	return callAPI("audit query", *asJSON, apiJSON[api.AuditList](c, "GET", "/api/v1/audit", q, nil),
		func(l api.AuditList) int {
			rows := make([][]string, len(l.Records))
			for i, r := range l.Records {
				who := r.Principal
				if r.PrincipalName != "" && !strings.HasSuffix(who, ":"+r.PrincipalName) {
					who += " (" + r.PrincipalName + ")"
				}
				rows[i] = []string{strconv.FormatInt(r.Seq, 10), cli.FormatTime(r.Time), who, r.Action, r.Resource,
					strings.ToUpper(r.Decision), r.Remote, r.RequestID, r.Reason}
			}
			return printTable("audit query", "no records", []string{"SEQ", "TIME", "PRINCIPAL", "ACTION", "RESOURCE", "DECISION", "FROM", "REQUEST", "WHY"}, rows)
		})
}
