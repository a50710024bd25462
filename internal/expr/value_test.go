package expr

import "testing"

// parseNumber follows Decimal.TryParse with InvariantCulture.
func TestParseNumber(t *testing.T) {
	type want struct {
		f  float64
		ok bool
	}
	conversion := map[string]want{
		"0": {0, true}, "10": {10, true}, " 10 ": {10, true}, "\t10\n": {10, true},
		"+10": {10, true}, "-10": {-10, true}, "- 10": {0, false}, "10-": {0, false},
		"1,000": {1000, true}, "1,2,3": {123, true}, "1,": {1, true}, ",1": {0, false},
		"1,000.25": {1000.25, true}, "1.000,25": {0, false},
		".5": {0.5, true}, "5.": {5, true}, ".": {0, false}, "-": {0, false}, "": {0, false},
		"0x10": {0, false}, "1e3": {0, false}, "NaN": {0, false}, "Infinity": {0, false},
		"1.2.3": {0, false}, "١": {0, false}, "1 000": {0, false}, "\u00a010": {0, false},
		"79228162514264337593543950335":  {79228162514264337593543950335, true},
		"792281625142643375935439503350": {0, false},
	}
	for s, w := range conversion {
		if f, ok := parseNumber(s, false); f != w.f || ok != w.ok {
			t.Errorf("parseNumber(%q) = %v, %v; want %v, %v", s, f, ok, w.f, w.ok)
		}
	}
	// Literals allow a sign and a decimal point only.
	literal := map[string]want{
		"-1.2": {-1.2, true}, ".5": {0.5, true}, "1,000": {0, false}, " 1": {0, false}, "+1": {1, true},
	}
	for s, w := range literal {
		if f, ok := parseNumber(s, true); f != w.f || ok != w.ok {
			t.Errorf("parseNumber(%q, literal) = %v, %v; want %v, %v", s, f, ok, w.f, w.ok)
		}
	}
}

// formatNumber is decimal.ToString("0.#######").
func TestFormatNumber(t *testing.T) {
	cases := map[float64]string{
		0: "0", 1: "1", -1: "-1", 1.5: "1.5", -0.5: "-0.5", 1000000: "1000000",
		0.1: "0.1", 0.12345675: "0.1234568", 0.12345674: "0.1234567", -0.12345675: "-0.1234568",
		9.99999999: "10", 99.999999951: "100", 0.00000004: "0", -0.00000004: "0",
		1e28: "10000000000000000000000000000", 123.456: "123.456",
	}
	for f, want := range cases {
		if got := formatNumber(f); got != want {
			t.Errorf("formatNumber(%v) = %q; want %q", f, got, want)
		}
	}
}

func TestParseVersion(t *testing.T) {
	cases := map[string]struct {
		v  Version
		ok bool
	}{
		"1.2":          {Version{1, 2, -1, -1}, true},
		"1.2.3":        {Version{1, 2, 3, -1}, true},
		"1.2.3.4":      {Version{1, 2, 3, 4}, true},
		" 1. 2 ":       {Version{1, 2, -1, -1}, true},
		"+1.2":         {Version{1, 2, -1, -1}, true},
		"1.-0":         {Version{1, 0, -1, -1}, true},
		"1.-1":         {ok: false},
		"1":            {ok: false},
		"1.2.3.4.5":    {ok: false},
		"1..2":         {ok: false},
		"a.b":          {ok: false},
		"1.2147483648": {ok: false},
		"":             {ok: false},
	}
	for s, w := range cases {
		v, ok := ParseVersion(s)
		if ok != w.ok || (ok && v != w.v) {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v, %v", s, v, ok, w.v, w.ok)
		}
	}
	if s := (Version{1, 2, -1, -1}).String(); s != "1.2" {
		t.Errorf("String() = %q", s)
	}
	if s := (Version{1, 2, 3, 4}).String(); s != "1.2.3.4" {
		t.Errorf("String() = %q", s)
	}
}

func TestCompareFold(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"abc", "ABC", 0}, {"a", "B", -1}, {"B", "a", 1}, {"", "", 0}, {"", "a", -1},
		{"ab", "a", 1}, {"é", "É", 0}, {"_", "a", 1}, // '_' (0x5F) sorts after 'A' (0x41)
		{"😀", "\uffff", -1}, // UTF-16 order: surrogates before U+E000–U+FFFF
	}
	for _, c := range cases {
		if got := compareFold(c.a, c.b); got != c.want {
			t.Errorf("compareFold(%q, %q) = %d; want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestJSONQuote(t *testing.T) {
	cases := map[string]string{
		`plain`:          `"plain"`,
		"a\"b\\c":        `"a\"b\\c"`,
		"\b\t\n\f\r\x01": `"\b\t\n\f\r\u0001"`,
		"\u2028<&>é":     `"\u2028<&>é"`,
	}
	for in, want := range cases {
		if got := jsonQuote(in); got != want {
			t.Errorf("jsonQuote(%q) = %s; want %s", in, got, want)
		}
	}
}
