package pipeline

import (
	"fmt"
	"strings"
)

// Error is one problem in a pipeline file. Line is 1-based; 0 means the
// problem is not tied to a line (an Options value, a dependsOn cycle).
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// ErrorList is what Compile returns when the pipeline is invalid: every
// problem found, in file order, so a user fixes them in one go.
type ErrorList []*Error

func (l ErrorList) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap exposes the individual problems to errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// maxErrors bounds the report: past this, later problems are usually echoes
// of earlier ones.
const maxErrors = 50
