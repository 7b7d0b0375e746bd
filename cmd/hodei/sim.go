package main

import (
	"fmt"
	"os"
)

// simCmd is a placeholder until the simulator lands.
func simCmd(args []string) int {
	fmt.Fprintln(os.Stderr, "hodei sim: not implemented yet")
	return exitFailed
}
