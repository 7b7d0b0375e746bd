// Package repocheck holds tests of the repository as a whole, not of one
// package: that the docs name, for each claim that something is refused,
// isolated, masked or durable, a test that exists ("Proved by:" lines, see
// docs/testing.md); that the mutation list (scripts/mutations.txt) still
// matches the code it mutates and names tests that exist; that no file
// names an absolute path outside the repository other than system ones; and
// that docs/architecture.md describes the code that runs: a row and a
// package doc for every package, and a job's path through functions that
// exist; and that the packages which only plan (simulator, autoscaler, API)
// link no engine client (client-go, Docker).
package repocheck
