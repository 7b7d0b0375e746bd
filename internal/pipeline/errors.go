package pipeline

import "github.com/hodei-ci/hodei/internal/yamlpos"

// Error is one problem found in a pipeline file: file, line, column, field
// and message, as every YAML file Hodei reads reports them (see
// yamlpos.Error).
type Error = yamlpos.Error

// ErrorList is every problem found in a pipeline file, sorted by position.
// Parse and Expand return one (never empty) when they fail.
type ErrorList = yamlpos.ErrorList
