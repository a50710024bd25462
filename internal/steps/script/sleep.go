package script

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"mvdan.cc/sh/v3/interp"
)

// sleepCommand stands in for sleep(1) in the embedded shell when the image
// has none: retry loops ("until …; do sleep 5; done") are among the most
// common lines in pipeline scripts, and u-root's core commands that
// moreinterp provides do not include it. It takes what GNU sleep takes: one
// or more numbers, each with an optional s, m, h or d suffix, summed;
// "infinity" sleeps until the step is canceled. Cancellation ends it at once.
func sleepCommand(ctx context.Context, stderr io.Writer, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "sleep: missing operand")
		return interp.ExitStatus(1)
	}
	var total float64 // seconds
	for _, a := range args {
		s, err := parseSleep(a)
		if err != nil {
			fmt.Fprintf(stderr, "sleep: invalid time interval '%s'\n", a)
			return interp.ExitStatus(1)
		}
		total += s
	}
	var wait <-chan time.Time
	// Beyond what a Duration holds (292 years) is forever, as for GNU sleep.
	if total < float64(math.MaxInt64)/float64(time.Second) {
		t := time.NewTimer(time.Duration(total * float64(time.Second)))
		defer t.Stop()
		wait = t.C
	}
	select {
	case <-wait:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// parseSleep returns an operand of sleep in seconds.
func parseSleep(a string) (float64, error) {
	mult := 1.0
	num := a
	if n := len(a); n > 1 {
		switch a[n-1] {
		case 's':
			num = a[:n-1]
		case 'm':
			num, mult = a[:n-1], 60
		case 'h':
			num, mult = a[:n-1], 60*60
		case 'd':
			num, mult = a[:n-1], 24*60*60
		}
	}
	switch strings.ToLower(num) {
	case "inf", "infinity":
		return math.Inf(1), nil
	}
	// Decimal numbers only: ParseFloat also takes hexadecimal and digit
	// separators, which sleep refuses.
	if strings.ContainsAny(num, "_xXpP") {
		return 0, fmt.Errorf("not a decimal number")
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || v < 0 {
		return 0, fmt.Errorf("not a non-negative number")
	}
	return v * mult, nil
}
