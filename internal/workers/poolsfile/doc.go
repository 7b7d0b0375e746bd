// Package poolsfile reads a pools file (`hodei server --pools`): the pools
// the workers Manager keeps, each with its provider, size, shape and the
// options of its provider. LoadConfig and ParseConfig report every problem
// with its file, line, column and field (a pipeline.ErrorList).
//
// It depends on no provider, so that code which only plans (the simulator,
// the autoscaler) reads pools files without linking an engine's client.
package poolsfile
