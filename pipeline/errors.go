package pipeline

import (
	"errors"
	"fmt"
	"strings"
)

// ErrSkip, returned by a stage function (or wrapped in its error), drops the
// item on purpose. A skipped item is counted in the stage's stats but is not
// a failure.
var ErrSkip = errors.New("pipeline: skip item")

// ErrEpochEnd is returned by Pipeline.Next at the end of an epoch.
var ErrEpochEnd = errors.New("pipeline: end of epoch")

// ErrClosed is returned by a Pipeline that has been closed.
var ErrClosed = errors.New("pipeline: closed")

// ErrStopped is returned by a Pipeline after Stop, once everything produced
// before it has been consumed, and after the last of its Epochs.
var ErrStopped = errors.New("pipeline: stopped")

// ErrBusy is returned when two goroutines consume one Pipeline at once.
var ErrBusy = errors.New("pipeline: already being consumed by another goroutine")

// Budget is how many item failures a stage or a pipeline tolerates: a count,
// or a fraction of invocations judged only after a probation period. Failed
// items within the budget are logged and dropped; past it the pipeline fails
// with a *BudgetError. An invalid budget (a negative count, a fraction with
// a denominator under 1 or over 1 as a whole) makes Build fail, naming the
// stage and the values.
type Budget struct {
	count     int64
	num, den  int64
	probation int64
	fraction  bool
	unlimited bool
	err       error // why the budget is invalid, reported by Build
}

// Count tolerates up to n failures; the n+1-th fails the pipeline. n must
// be 0 or more.
func Count(n int) Budget {
	b := Budget{count: int64(n)}
	if n < 0 {
		b.err = fmt.Errorf("Count(%d): the count must be 0 or more", n)
	}
	return b
}

// Unlimited tolerates any number of failures (each is still logged and counted).
func Unlimited() Budget { return Budget{unlimited: true} }

// Fraction tolerates failures as long as failures/invocations ≤ num/den. It
// is judged only once den invocations have run, unless Probation says
// otherwise. den must be at least 1 and num between 0 and den (use
// Unlimited to tolerate every failure).
func Fraction(num, den int) Budget {
	b := Budget{num: int64(num), den: int64(den), probation: int64(max(den, 0)), fraction: true}
	switch {
	case den < 1:
		b.err = fmt.Errorf("Fraction(%d, %d): the denominator must be at least 1", num, den)
	case num < 0:
		b.err = fmt.Errorf("Fraction(%d, %d): the numerator must be 0 or more", num, den)
	case num > den:
		b.err = fmt.Errorf("Fraction(%d, %d): more than 1 (use Unlimited to tolerate every failure)", num, den)
	}
	return b
}

// Probation sets how many invocations must run before a fraction is judged;
// n must be 0 or more.
func (b Budget) Probation(n int) Budget {
	b.probation = int64(n)
	if n < 0 && b.err == nil {
		b.err = fmt.Errorf("Probation(%d): the probation must be 0 or more", n)
	}
	return b
}

// Err reports why the budget is invalid, or nil. Build reports the same
// error, naming where the budget was given.
func (b Budget) Err() error { return b.err }

func (b Budget) exceeded(failures, invocations int64) bool {
	switch {
	case b.unlimited:
		return false
	case b.fraction:
		return invocations >= b.probation && failures*b.den > b.num*invocations
	default:
		return failures > b.count
	}
}

// String describes the budget, e.g. "3 failures" or "1/100 after 100 invocations".
func (b Budget) String() string {
	switch {
	case b.unlimited:
		return "unlimited"
	case b.fraction:
		return fmt.Sprintf("%d/%d after %d invocations", b.num, b.den, b.probation)
	default:
		return fmt.Sprintf("%d failures", b.count)
	}
}

// ItemError is the failure of one item in one stage.
type ItemError struct {
	Stage string // stage that failed
	Epoch uint64 // pass over the source, from 0
	Index int64  // position of the item in its source pass, from 0
	Err   error  // what the stage function returned (or a *PanicError)
}

func (e *ItemError) Error() string {
	return fmt.Sprintf("stage %q, epoch %d, item %d: %v", e.Stage, e.Epoch, e.Index, e.Err)
}

func (e *ItemError) Unwrap() error { return e.Err }

// BudgetError stops a pipeline whose failures exceeded a budget.
type BudgetError struct {
	Stage       string  // stage whose budget ran out; empty for the pipeline-wide budget
	Failures    int64   // failures counted
	Invocations int64   // invocations (stage) or source items (pipeline) they are out of
	Budget      Budget  // the budget that was exceeded
	Causes      []error // the first failures, as *ItemError
}

func (e *BudgetError) Error() string {
	var b strings.Builder
	if e.Stage != "" {
		fmt.Fprintf(&b, "pipeline: stage %q failed %d of %d items, over its budget of %v", e.Stage, e.Failures, e.Invocations, e.Budget)
	} else {
		fmt.Fprintf(&b, "pipeline: %d items failed out of %d, over the pipeline budget of %v", e.Failures, e.Invocations, e.Budget)
	}
	for i, c := range e.Causes {
		if i == 0 {
			b.WriteString("; first causes: ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(c.Error())
	}
	return b.String()
}

// Unwrap returns the causes, so errors.As finds an *ItemError or a
// *PanicError among them.
func (e *BudgetError) Unwrap() []error { return e.Causes }

// PanicError is a panic raised by a stage function, recovered and turned into
// the failure of the item being processed.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the stack of the panicking goroutine
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}
