package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// summary describes repeated measurements of one quantity.
type summary struct {
	N                     int
	Min, Median, P95, Max float64
	Mean                  float64
	values                []float64 // sorted
}

// summarize sorts a copy of xs. The median of an even count is the mean of
// the two middle values; p95 is the nearest-rank percentile (the smallest
// value with at least 95% of the samples at or below it), so with fewer
// than 20 samples it is the maximum.
func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{}
	}
	v := slices.Clone(xs)
	slices.Sort(v)
	s := summary{N: len(v), Min: v[0], Max: v[len(v)-1], values: v}
	if n := len(v); n%2 == 1 {
		s.Median = v[n/2]
	} else {
		s.Median = (v[n/2-1] + v[n/2]) / 2
	}
	s.P95 = percentile(v, 95)
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	s.Mean = sum / float64(len(v))
	return s
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms converts durations to milliseconds for summarize.
func ms(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// fmtMS renders milliseconds with a precision that suits their size.
func fmtMS(v float64) string {
	switch a := math.Abs(v); {
	case a >= 10000:
		return fmt.Sprintf("%.1f s", v/1000)
	case a >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case a >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case a >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// fmtMiB renders a byte count in MiB.
func fmtMiB(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// medianRange renders "median (min–max, n=N)" with f formatting each value.
func (s summary) medianRange(f func(float64) string) string {
	if s.N == 1 {
		return f(s.Median) + " (n=1)"
	}
	return fmt.Sprintf("%s (%s–%s, n=%d)", f(s.Median), f(s.Min), f(s.Max), s.N)
}

// percentiles renders "p50 X, p95 Y (min–max, n=N)".
func (s summary) percentiles(f func(float64) string) string {
	return fmt.Sprintf("p50 %s, p95 %s (%s–%s, n=%d)", f(s.Median), f(s.P95), f(s.Min), f(s.Max), s.N)
}

// distribution renders every percentile the reader may want.
func (s summary) distribution(f func(float64) string) string {
	return fmt.Sprintf("min %s · p50 %s · p95 %s · max %s · mean %s (n=%d)", f(s.Min), f(s.Median), f(s.P95), f(s.Max), f(s.Mean), s.N)
}

// list renders values as a compact list, for the details section.
func list(xs []float64, f func(float64) string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = f(x)
	}
	return strings.Join(parts, ", ")
}

func ratio(a, b float64) string {
	if b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}
