package azdo

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzExpandRoute: expansion never panics, a value never adds a path segment,
// and a "." or ".." segment only ever comes from the template itself.
func FuzzExpandRoute(f *testing.F) {
	for _, seed := range []struct{ tmpl, a, b string }{
		{"_apis/{area}/pools/{poolId}/{resource}/{messageId}", "12", ""},
		{"{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}", "..", "."},
		{"_apis/{area}/{*path}", "a/b/../c", "x"},
		{"{a}{b}/x", ".", "."},
		{"_apis/{{a}}/{b", "%2e%2e", "?#"},
		{"/{a}//{b}/", "", ".."},
		{"..{a}/{b}..", "", ""},
		{"}{}{{{*}}", "\x00", "é"},
	} {
		f.Add(seed.tmpl, seed.a, seed.b)
	}
	f.Fuzz(func(t *testing.T, tmpl, a, b string) {
		loc := ResourceLocation{Area: "distributedtask", ResourceName: "messages", RouteTemplate: tmpl}
		out, err := expandRoute(loc, map[string]string{"a": a, "b": b, "poolId": a, "path": a, "scopeIdentifier": a, "hubName": b})
		if err != nil {
			return
		}
		var tmplSegs []string
		for _, s := range strings.Split(tmpl, "/") {
			if s != "" {
				tmplSegs = append(tmplSegs, s)
			}
		}
		segs := strings.Split(out, "/")
		if out != "" && len(segs) > len(tmplSegs) {
			t.Fatalf("expandRoute(%q, a=%q, b=%q) = %q: more segments than the template", tmpl, a, b, out)
		}
		for _, s := range segs {
			if (s == "." || s == "..") && !slices.Contains(tmplSegs, s) {
				t.Fatalf("expandRoute(%q, a=%q, b=%q) = %q: a value made a %q segment", tmpl, a, b, out, s)
			}
			if s == "" && out != "" {
				t.Fatalf("expandRoute(%q) = %q: empty segment", tmpl, out)
			}
		}
		// Whatever comes out stays under the base URL.
		base, _ := url.Parse("https://x/org/")
		u, err := joinPath(base, out)
		if err != nil {
			t.Fatalf("joinPath(%q): %v", out, err)
		}
		again, err := url.Parse(u.String())
		if err != nil || again.Host != "x" || !strings.HasPrefix(again.EscapedPath(), "/org/") {
			t.Fatalf("expandRoute(%q, a=%q, b=%q) = %q makes %s", tmpl, a, b, out, u)
		}
	})
}

// FuzzAPIVersion: parsing and negotiation never panic, a parsed version
// prints as something that parses back to the same text, and negotiation
// never sends a version above the server's maximum.
func FuzzAPIVersion(f *testing.F) {
	for _, seed := range []struct{ req, minV, maxV, rel string }{
		{"5.1-preview.1", "1.0", "7.2", "7.1"},
		{"7.2", "1.0", "7.2", "0.0"},
		{"v8.0-PREVIEW.99", "6.0", "7.2.0.0", "7.1"},
		{"1.0-preview.-1", "", "", ""},
		{"-preview", "x", "1.0", "1"},
		{"99999999999.1", "1.0", "7.2", "7.1"},
		{"5.", "5.1", "5.1", "5.1"},
	} {
		f.Add(seed.req, seed.minV, seed.maxV, seed.rel, 2)
	}
	f.Fuzz(func(t *testing.T, req, minV, maxV, rel string, res int) {
		if v, err := parseAPIVersion(req); err == nil {
			again, err := parseAPIVersion(v.String())
			if err != nil || again.String() != v.String() {
				t.Fatalf("%q printed as %q, which parses as %q (%v)", req, v, again, err)
			}
			_ = v.acceptParams()
		}
		loc := ResourceLocation{ID: "x", MinVersion: minV, MaxVersion: maxV, ReleasedVersion: rel, ResourceVersion: res}
		v, err := negotiate(loc, req)
		if err != nil || maxV == "" {
			return
		}
		maj, mnr, err := parseMajorMinor(maxV, true)
		if err != nil {
			t.Fatalf("negotiate accepted maxVersion %q", maxV)
		}
		if (apiVersion{major: maj, minor: mnr}).less(v) {
			t.Fatalf("negotiate(%q, max %q) = %q, above the maximum", req, maxV, v)
		}
		if v.resource > max(res, 0) && v.resource > 0 {
			t.Fatalf("negotiate(%q, resourceVersion %d) = %q", req, res, v)
		}
	})
}
