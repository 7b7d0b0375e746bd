//go:build ignore

// gen writes the init executables and their listings (go generate).
package main

import (
	"log"
	"os"

	"github.com/hodei-ci/hodei/internal/sandbox/staticinit"
)

func main() {
	for _, arch := range []string{"amd64"} {
		prog, err := staticinit.Build(arch)
		if err != nil {
			log.Fatal(err)
		}
		lst, err := staticinit.Listing(arch)
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile("init_linux_"+arch, prog, 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile("init_linux_"+arch+".lst", []byte(lst), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
