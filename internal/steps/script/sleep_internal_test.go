package script

import (
	"math"
	"testing"
)

func TestParseSleep(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
		bad  bool
	}{
		{in: "5", want: 5},
		{in: "0.25", want: 0.25},
		{in: ".5", want: 0.5},
		{in: "2s", want: 2},
		{in: "1.5m", want: 90},
		{in: "2h", want: 7200},
		{in: "1d", want: 86400},
		{in: "1e1", want: 10},
		{in: "infinity", want: math.Inf(1)},
		{in: "inf", want: math.Inf(1)},
		{in: "0", want: 0},
		{in: "", bad: true},
		{in: "s", bad: true},
		{in: "-1", bad: true},
		{in: "abc", bad: true},
		{in: "5x", bad: true},
		{in: "0x10", bad: true},
		{in: "1_000", bad: true},
		{in: "NaN", bad: true},
		{in: "1ms", bad: true},
	} {
		got, err := parseSleep(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("parseSleep(%q) = %v, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseSleep(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}
