package api

// What keeps slow and abusive clients from wearing the API down (see
// docs/api.md, "Hardening"): the timeouts of the HTTP server, the per-write
// deadline of long responses, the rate limit of failed authentications per
// address, and the cap on request-derived text in the logs (logcap.go).

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Limits protect the API; zero fields take the defaults (DefaultLimits).
type Limits struct {
	// ReadHeaderTimeout bounds the reading of a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the reading of a whole request, body included.
	// Streams lift it once their request is read.
	ReadTimeout time.Duration
	// WriteTimeout bounds the writing of a response; long responses (log
	// streams, whole logs) get it again before each write instead, so a
	// stream lasts as long as its client reads.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection with no request.
	IdleTimeout time.Duration
	// AuthFailBurst failed authentications are allowed from one address
	// at once, then one per AuthFailEvery; past that the API answers 429.
	// A negative AuthFailBurst turns the limit off.
	AuthFailBurst int
	AuthFailEvery time.Duration
}

// DefaultLimits are the limits of a zero Limits.
var DefaultLimits = Limits{
	ReadHeaderTimeout: 10 * time.Second,
	ReadTimeout:       60 * time.Second,
	WriteTimeout:      60 * time.Second,
	IdleTimeout:       120 * time.Second,
	AuthFailBurst:     20,
	AuthFailEvery:     time.Second,
}

// WithDefaults returns l with its zero fields set to DefaultLimits'.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.ReadHeaderTimeout, d.ReadHeaderTimeout)
	set(&l.ReadTimeout, d.ReadTimeout)
	set(&l.WriteTimeout, d.WriteTimeout)
	set(&l.IdleTimeout, d.IdleTimeout)
	set(&l.AuthFailEvery, d.AuthFailEvery)
	if l.AuthFailBurst == 0 {
		l.AuthFailBurst = d.AuthFailBurst
	}
	return l
}

// HTTPServer returns an http.Server for the API's handler with the
// timeouts of l.
func (l Limits) HTTPServer(h http.Handler) *http.Server {
	l = l.WithDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
	}
}

// longResponse prepares w for a response that may outlast WriteTimeout
// (its request has been read): it lifts the read deadline, which would
// otherwise end the request's context, and returns a function to call
// before each write, which gives that write WriteTimeout. A client that
// stops reading is cut after WriteTimeout; one that reads keeps its stream.
// Writers that cannot take deadlines (tests' recorders) are left as they are.
func (a *api) longResponse(w http.ResponseWriter) (beforeWrite func()) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	d := a.limits.WriteTimeout
	return func() { _ = rc.SetWriteDeadline(time.Now().Add(d)) }
}

// refuseBody makes a refusal written before the body was read go out at
// once: without it, the server reads (to discard) up to 256 kB of the body
// before it writes the answer, at the pace the client chooses. The
// connection is closed after the answer instead. Call it before writing.
func refuseBody(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	w.Header().Set("Connection", "close")
	// Reads of the rest of the body, if anything tries, fail at once.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// failLimiter is a token bucket of failed authentications per remote
// address (the TCP peer's IP; ports and proxies' headers are not used).
type failLimiter struct {
	burst float64
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets bounds the memory of the limiter; past it, full buckets (of
// addresses that have not failed for a while) are forgotten.
const maxBuckets = 10000

func newFailLimiter(l Limits) *failLimiter {
	if l.AuthFailBurst < 0 {
		return nil
	}
	return &failLimiter{burst: float64(l.AuthFailBurst), every: l.AuthFailEvery, now: time.Now, buckets: map[string]*bucket{}}
}

// remoteHost is the address a limit applies to.
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// fail takes a token for a failed authentication from addr's bucket. It
// returns 0 if there was one, else how long until there is.
func (f *failLimiter) fail(addr string) time.Duration {
	if f == nil {
		return 0
	}
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.buckets[addr]
	if b == nil {
		if len(f.buckets) >= maxBuckets {
			f.sweep(now)
		}
		b = &bucket{tokens: f.burst, at: now}
		f.buckets[addr] = b
	}
	b.refill(now, f.burst, f.every)
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(f.every))
}

func (b *bucket) refill(now time.Time, burst float64, every time.Duration) {
	if el := now.Sub(b.at); el > 0 {
		b.tokens = math.Min(burst, b.tokens+float64(el)/float64(every))
		b.at = now
	}
}

// sweep forgets the full buckets, or, if none is, the whole map: an
// attacker with that many addresses is not slowed down by one more.
func (f *failLimiter) sweep(now time.Time) {
	for k, b := range f.buckets {
		b.refill(now, f.burst, f.every)
		if b.tokens >= f.burst {
			delete(f.buckets, k)
		}
	}
	if len(f.buckets) >= maxBuckets {
		clear(f.buckets)
	}
}

// retryAfter is the Retry-After value of a wait: whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(max(int64(math.Ceil(d.Seconds())), 1), 10)
}
