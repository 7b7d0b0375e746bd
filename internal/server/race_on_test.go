//go:build race

package server

// raceEnabled: the race detector adds shadow memory to every allocation.
const raceEnabled = true
