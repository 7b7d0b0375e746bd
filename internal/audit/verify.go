package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Problem is the first break of the chain that Verify finds.
type Problem struct {
	Line int   // 1-based line of the file
	Seq  int64 // the seq the record claims (or, if unreadable, the seq expected there)
	Msg  string
}

func (p *Problem) Error() string {
	return fmt.Sprintf("audit record seq %d (line %d): %s", p.Seq, p.Line, p.Msg)
}

// Report is the result of a successful verification.
type Report struct {
	Records   int64  `json:"records"`    // records checked
	FirstSeq  int64  `json:"first_seq"`  // 0 if there are none
	LastSeq   int64  `json:"last_seq"`   // the head: the last seq (the anchor's, if no records follow it)
	LastHash  string `json:"last_hash"`  // the head's hash
	AnchorSeq int64  `json:"anchor_seq"` // records up to this seq were pruned (0: none)
}

// VerifyOptions add checks to Verify.
type VerifyOptions struct {
	// HeadSeq and HeadHash, if set, are a head recorded earlier (Log.Head,
	// or the last Report): the file must still contain that record with
	// that hash, which detects the removal of records from the end.
	HeadSeq  int64
	HeadHash string
}

// Verify checks the audit file at path: every line is a record in canonical
// form whose hash matches its content, whose Prev is the hash of the record
// before it (or of the anchor), and whose Seq follows the previous one. A
// changed byte, a removed record and two swapped records all break one of
// these; the error is a *Problem naming the first record that does not fit.
func Verify(path string, o VerifyOptions) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	return VerifyReader(f, o)
}

// VerifyReader is Verify on an open file.
func VerifyReader(r io.Reader, o VerifyOptions) (Report, error) {
	var rep Report
	prevHash, prevSeq := GenesisHash, int64(0)
	headSeen := o.HeadSeq == 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		raw := sc.Bytes()
		if line == 1 && bytes.HasPrefix(raw, []byte(`{"anchor"`)) {
			var a Anchor
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&a); err != nil {
				return rep, &Problem{Line: line, Msg: "unreadable anchor: " + err.Error()}
			}
			if len(a.Anchor.Hash) != 64 || a.Anchor.Seq < 1 {
				return rep, &Problem{Line: line, Seq: a.Anchor.Seq, Msg: "malformed anchor"}
			}
			prevHash, prevSeq = a.Anchor.Hash, a.Anchor.Seq
			rep.AnchorSeq = a.Anchor.Seq
			if o.HeadSeq == a.Anchor.Seq && o.HeadHash == a.Anchor.Hash {
				headSeen = true
			}
			continue
		}
		var rec Record
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return rep, &Problem{Line: line, Seq: prevSeq + 1, Msg: "unreadable record: " + err.Error()}
		}
		switch {
		case rec.Seq != prevSeq+1:
			msg := fmt.Sprintf("out of sequence: seq %d follows seq %d", rec.Seq, prevSeq)
			if rec.Seq > prevSeq+1 {
				msg += fmt.Sprintf(" (seq %d to %d are missing or out of place)", prevSeq+1, rec.Seq-1)
			} else {
				msg += " (a record was moved or repeated)"
			}
			return rep, &Problem{Line: line, Seq: rec.Seq, Msg: msg}
		case !bytes.Equal(raw, encode(rec)):
			return rep, &Problem{Line: line, Seq: rec.Seq, Msg: "the line was edited: it is not the canonical encoding of its record"}
		case rec.Hash != HashOf(rec):
			return rep, &Problem{Line: line, Seq: rec.Seq, Msg: "content does not match its hash: the record was changed"}
		case rec.Prev != prevHash:
			return rep, &Problem{Line: line, Seq: rec.Seq, Msg: "prev does not match the hash of the record before it: a record was removed, replaced or moved"}
		}
		if rep.FirstSeq == 0 {
			rep.FirstSeq = rec.Seq
		}
		rep.Records++
		prevHash, prevSeq = rec.Hash, rec.Seq
		if rec.Seq == o.HeadSeq {
			if rec.Hash != o.HeadHash {
				return rep, &Problem{Line: line, Seq: rec.Seq, Msg: "hash differs from the recorded head"}
			}
			headSeen = true
		}
	}
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("audit: read: %w", err)
	}
	rep.LastSeq, rep.LastHash = prevSeq, prevHash
	if !headSeen {
		return rep, &Problem{Line: line + 1, Seq: o.HeadSeq,
			Msg: fmt.Sprintf("the recorded head is gone: the file ends at seq %d (records were removed from the end)", prevSeq)}
	}
	return rep, nil
}

// IsProblem reports whether err is a break of the chain (rather than an
// error reading the file).
func IsProblem(err error) bool {
	var p *Problem
	return errors.As(err, &p)
}
