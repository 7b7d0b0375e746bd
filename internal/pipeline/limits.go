package pipeline

import (
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Default limits of a pipeline; a server may set others (Limits).
const (
	// DefaultMaxJobs is the most jobs a pipeline may have, counted after
	// matrix expansion.
	DefaultMaxJobs = 1000
	// DefaultMaxFileBytes is the largest pipeline file, 1 MiB.
	DefaultMaxFileBytes = 1 << 20
)

// Limits bound what one pipeline may ask for. A zero field means its
// default.
type Limits struct {
	MaxJobs      int // jobs after matrix expansion; DefaultMaxJobs
	MaxFileBytes int // size of the file; DefaultMaxFileBytes
}

// WithDefaults fills the zero fields.
func (l Limits) WithDefaults() Limits {
	if l.MaxJobs <= 0 {
		l.MaxJobs = DefaultMaxJobs
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = DefaultMaxFileBytes
	}
	return l
}

// SizeError is the error of a file larger than max bytes (size is -1 when
// only "more than max" is known).
func SizeError(file string, size int64, max int) *Error {
	got := "larger than"
	if size >= 0 {
		got = fmt.Sprintf("%s (%d bytes), larger than", FormatBytes(size), size)
	}
	return &Error{File: file, Msg: fmt.Sprintf("the file is %s the limit of %s (%d bytes) on pipeline files", got, FormatBytes(int64(max)), max)}
}

// FormatBytes writes a size with a binary unit, as quantities are
// written in pipeline files and flags: "300", "64Mi", "1.5Gi".
func FormatBytes(n int64) string {
	units := []string{"", "Ki", "Mi", "Gi", "Ti", "Pi"}
	v := float64(n)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatInt(n, 10)
	}
	return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") + units[i]
}

// ReadFile reads a pipeline file of at most max bytes (DefaultMaxFileBytes
// when max is 0) from r, named file in messages. A larger file is an
// ErrorList holding its SizeError; nothing past max+1 bytes is read.
func ReadFile(file string, r io.Reader, max int) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxFileBytes
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > max {
		size := int64(-1)
		if f, ok := r.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				size = fi.Size()
			}
		}
		return nil, ErrorList{SizeError(file, size, max)}
	}
	return data, nil
}

// checkJobCount reports a pipeline whose jobs expand into more than max
// jobs; the error is placed at the jobs key.
func (p *parser) checkJobCount(jobsKey *yaml.Node, max int) {
	total := big.NewInt(0)
	for _, info := range p.jobs {
		if m := info.job.Matrix; m != nil && len(m.Axes) > 0 {
			total.Add(total, combinationCount(m))
		} else {
			total.Add(total, big.NewInt(1))
		}
	}
	if total.Cmp(big.NewInt(int64(max))) > 0 {
		p.Errorf(jobsKey, "jobs", "the pipeline has %s jobs (matrix combinations counted); at most %d are allowed in one pipeline", total, max)
	}
}
