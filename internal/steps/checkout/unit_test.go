package checkout

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/wire"
)

// Expected values follow the official agent's RepositoryUtilL0 cases (which
// follow git's t5603-clone-dirname.sh), plus Azure Repos and GitHub names.
var cloneDirCases = map[string]string{
	"host:foo": "foo", "host:foo.git": "foo", "host:foo/.git": "foo",
	"ssh://host/foo": "foo", "ssh://host/foo.git": "foo", "ssh://host/foo/.git": "foo",
	"ssh://host/foo/": "foo", "ssh://host/foo///": "foo", "ssh://host/foo/.git/": "foo",
	"ssh://host/foo.git/": "foo", "ssh://host/foo.git///": "foo", "ssh://host/foo///.git/": "foo",
	"ssh://host/foo/.git///": "foo", "host:foo/": "foo", "host:foo///": "foo",
	"host:foo.git/": "foo", "host:foo/.git/": "foo", "host:foo.git///": "foo",
	"host:foo///.git/": "foo", "host:foo/.git///": "foo", "host:foo/repo": "repo",
	"ssh://host/": "host", "ssh://host:1234/": "host", "ssh://user@host/": "host",
	"host:/": "host", "ssh://user:password@host/": "host", "ssh://user:password@host:1234/": "host",
	"ssh://user:passw@rd@host:1234/": "host", "user@host:/": "host", "user:password@host:/": "host",
	"user:passw@rd@host:/": "host", "ssh://user:password@host/test:1234": "1234",
	"ssh://user:password@host/test:1234.git":      "1234",
	"https://dev.azure.com/org/proj/_git/app":     "app",
	"https://org@dev.azure.com/org/proj/_git/app": "app",
	"contoso/tools": "tools", "tools": "tools", "Tools.GIT": "Tools",
}

func TestCloneDirectory(t *testing.T) {
	for in, want := range cloneDirCases {
		if got := cloneDirectory(in); got != want {
			t.Errorf("cloneDirectory(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzCloneDirectory(f *testing.F) {
	for in := range cloneDirCases {
		f.Add(in)
	}
	for _, s := range []string{"", "/", ".git", "@", ":", "a:/", "://", "x://@:/.git/", " \t", "a/..", "..", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := cloneDirectory(in)
		if !strings.Contains(in, got) {
			t.Fatalf("cloneDirectory(%q) = %q, not a part of the input", in, got)
		}
	})
}

func TestResolvePath(t *testing.T) {
	for _, tc := range []struct{ rel, want, err string }{
		{rel: "s", want: "/w/1/s"},
		{rel: "a/./b//c/", want: "/w/1/a/b/c"},
		{rel: "a/../b", want: "/w/1/b"},
		{rel: "../2/s", want: "/w/2/s"},
		{rel: "../../../../x", err: "is invalid"},
		{rel: "/abs", err: "can not be a rooted path."},
	} {
		got, err := resolvePath("/w/1", tc.rel)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("resolvePath(%q) err = %v, want %q", tc.rel, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("resolvePath(%q) = %q, %v; want %q", tc.rel, got, err, tc.want)
		}
	}
}

func FuzzResolvePath(f *testing.F) {
	for _, s := range []string{"s", "a/../b", "../..", "./", "//x", "a/b/../../..", "...", "a\\b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		const root = "/w/1"
		got, err := resolvePath(root, rel)
		if err != nil {
			return
		}
		if want := filepath.Clean(filepath.Join(root, rel)); got != want {
			t.Fatalf("resolvePath(%q) = %q, want %q", rel, got, want)
		}
	})
}

func TestParseFetchFilter(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"blob:none":             "blob:none",
		"tree:0":                "tree:0",
		"tree:1":                "",
		"blob:limit=1k":         "",
		" blob : none + tree:0": "blob:none tree:0",
		"BLOB:None+Tree:0":      "blob:none tree:0",
		"sparse:oid=x":          "",
	} {
		if got := strings.Join(parseFetchFilter(in), " "); got != want {
			t.Errorf("parseFetchFilter(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseFetchFilter(f *testing.F) {
	for _, s := range []string{"blob:none", "tree:0+blob:NONE", "::+::", "tree:00", "+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, out := range parseFetchFilter(in) {
			if out != "tree:0" && out != "blob:none" {
				t.Fatalf("parseFetchFilter(%q) produced %q", in, out)
			}
		}
	})
}

func TestParseGitVersion(t *testing.T) {
	for in, want := range map[string]gitVersion{
		"git version 2.39.5":                 {2, 39, 5},
		"git version 2.45.1.windows.1":       {2, 45, 1},
		"git version 2.17":                   {2, 17, 0},
		"git version 1.8.3.1 (Apple Git-98)": {1, 8, 3},
	} {
		got, ok := parseGitVersion(in)
		if !ok || got != want {
			t.Errorf("parseGitVersion(%q) = %v, %t", in, got, ok)
		}
	}
	if _, ok := parseGitVersion("no version here"); ok {
		t.Error("parsed a version out of nothing")
	}
	v := gitVersion{2, 31, 0}
	if !v.atLeast(2, 31) || !v.atLeast(1, 99) || v.atLeast(2, 32) || v.atLeast(3, 0) {
		t.Error("atLeast is wrong")
	}
}

func FuzzParseGitVersion(f *testing.F) {
	for _, s := range []string{"git version 2.39.5", "99999999999999999999.1", "1.2.3.4", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		v, ok := parseGitVersion(in)
		if ok && (v[0] < 0 || v[1] < 0 || v[2] < 0) {
			t.Fatalf("negative version %v from %q", v, in)
		}
	})
}

func TestDisplayName(t *testing.T) {
	repo := func(alias, name, ref string) wire.RepositoryResource {
		return wire.RepositoryResource{Alias: alias, Properties: props(map[string]any{"name": name, "ref": ref, "type": "Git"})}
	}
	one := &steps.Job{Repositories: []wire.RepositoryResource{repo("self", "app", "refs/heads/main")}, CheckoutCount: 1}
	two := &steps.Job{Repositories: []wire.RepositoryResource{
		repo("self", "proj/app", "refs/heads/release/1.0"),
		repo("tools", "contoso/tools.git", "refs/pull/7/merge"),
	}, CheckoutCount: 2}
	for _, tc := range []struct {
		job    *steps.Job
		inputs map[string]string
		want   string
	}{
		{one, map[string]string{"repository": "self"}, "Checkout app@main to s"},
		{one, map[string]string{"Repository": "SELF"}, "Checkout app@main to s"},
		{one, map[string]string{"repository": "self", "path": "src"}, "Checkout app@main to src"},
		{two, map[string]string{"repository": "self"}, "Checkout proj/app@release/1.0 to s/app"},
		{two, map[string]string{"repository": "tools"}, "Checkout contoso/tools.git@refs/pull/7/merge to s/tools"},
		{one, map[string]string{"repository": "missing"}, ""},
		{nil, map[string]string{"repository": "self"}, ""},
	} {
		if got := DisplayName(tc.inputs, tc.job); got != tc.want {
			t.Errorf("DisplayName(%v) = %q, want %q", tc.inputs, got, tc.want)
		}
	}
}

func TestSameRepositoryURL(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"https://dev.azure.com/org/p/_git/r", "https://org@dev.azure.com/org/p/_git/r", true},
		{"https://DEV.azure.com/org/p/_git/r", "HTTPS://dev.azure.com/org/p/_git/r", true},
		{"https://host:443/r", "https://host/r", true},
		{"https://host/r", "https://host/R", false},
		{"https://host/r", "https://host/r.git", false},
		{"https://host/r", "http://host/r", false},
		{"", "https://host/r", false},
	} {
		if got := sameRepositoryURL(tc.a, tc.b); got != tc.want {
			t.Errorf("sameRepositoryURL(%q, %q) = %t", tc.a, tc.b, got)
		}
	}
}

func TestRemoteRefName(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "refs/remotes/origin/master",
		"master":            "refs/remotes/origin/master",
		"refs/heads/main":   "refs/remotes/origin/main",
		"refs/pull/7/merge": "refs/remotes/pull/7/merge",
		"refs/tags/v1":      "refs/tags/v1",
	} {
		if got := remoteRefName(in); got != want {
			t.Errorf("remoteRefName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBoolOf(t *testing.T) {
	for in, want := range map[string]bool{"True": true, "1": true, "$true": true, "false": false, " 0 ": false, "$FALSE": false} {
		if got := boolOf(in, !want); got != want {
			t.Errorf("boolOf(%q) = %t", in, got)
		}
	}
	if !boolOf("maybe", true) || boolOf("", false) {
		t.Error("unparsable values must give the default")
	}
}

// A repository name that would place the clone outside s/ is refused.
func TestUnsafeRepositoryName(t *testing.T) {
	ex := &steps.Exec{
		Inputs: map[string]string{"repository": "evil"},
		Dirs:   steps.Dirs{Build: "/w/1", Work: "/w"},
		Job: &steps.Job{CheckoutCount: 2, Repositories: []wire.RepositoryResource{{
			Alias:      "evil",
			Properties: props(map[string]any{"name": "x/..", "type": "Git", "url": "https://host/x"}),
		}}},
	}
	if _, err := resolve(ex); err == nil || !strings.Contains(err.Error(), "no usable directory name") {
		t.Fatalf("err = %v", err)
	}
}

func TestCheckoutOptionsValues(t *testing.T) {
	r := &wire.RepositoryResource{Properties: props(map[string]any{
		"checkoutOptions": map[string]any{"clean": true, "fetchDepth": 3, "submodules": "recursive"},
	})}
	got := checkoutOptions(r)
	if got["clean"] != "True" || got["fetchDepth"] != "3" || got["submodules"] != "recursive" {
		t.Fatalf("checkoutOptions = %v", got)
	}
}

// PrepareGoGit lifts the multi_ack restriction once and is idempotent.
func TestPrepareGoGit(t *testing.T) {
	for i := 0; i < 2; i++ {
		if err := PrepareGoGit(azdo.TransportOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range transport.UnsupportedCapabilities {
		if c == capability.MultiACK || c == capability.MultiACKDetailed {
			t.Fatalf("%s still unsupported", c)
		}
	}
	found := false
	for _, c := range transport.UnsupportedCapabilities {
		found = found || c == capability.ThinPack
	}
	if !found {
		t.Fatal("thin-pack must stay unsupported: go-git cannot read thin packs")
	}
}
