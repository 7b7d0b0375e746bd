package main

import (
	"errors"
	"flag"

	"github.com/hodei-ci/hodei/internal/api"
)

// apiLimitFlags are the flags of "hodei server" that protect its API from
// slow and abusive clients (docs/api.md, "Hardening").
type apiLimitFlags struct {
	l api.Limits
}

func addAPILimitFlags(fs *flag.FlagSet) *apiLimitFlags {
	f := &apiLimitFlags{}
	d := api.DefaultLimits
	fs.DurationVar(&f.l.ReadHeaderTimeout, "http-read-header-timeout", d.ReadHeaderTimeout, "time a client has to send a request's headers")
	fs.DurationVar(&f.l.ReadTimeout, "http-read-timeout", d.ReadTimeout, "time a client has to send a whole request, body included")
	fs.DurationVar(&f.l.WriteTimeout, "http-write-timeout", d.WriteTimeout, "time to write a response; log streams get it for each write")
	fs.DurationVar(&f.l.IdleTimeout, "http-idle-timeout", d.IdleTimeout, "how long a kept-alive connection may wait for its next request")
	fs.IntVar(&f.l.AuthFailBurst, "auth-fail-burst", d.AuthFailBurst, "failed authentications allowed at once from one address before 429 (-1: no limit)")
	fs.DurationVar(&f.l.AuthFailEvery, "auth-fail-every", d.AuthFailEvery, "one more failed authentication is allowed from an address every this long")
	return f
}

// limits checks the flags and returns the limits.
func (f *apiLimitFlags) limits() (api.Limits, error) {
	l := f.l
	if l.ReadHeaderTimeout <= 0 || l.ReadTimeout <= 0 || l.WriteTimeout <= 0 || l.IdleTimeout <= 0 || l.AuthFailEvery <= 0 {
		return l, errors.New("--http-*-timeout and --auth-fail-every must be positive")
	}
	if l.AuthFailBurst == 0 || l.AuthFailBurst < -1 {
		return l, errors.New("--auth-fail-burst must be 1 or more, or -1 for no limit")
	}
	return l, nil
}
