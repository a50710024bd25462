package checkout

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"

	"github.com/goagent-dev/goagent/internal/wire"
)

// cloneDirectory is the directory name a repository gets in the
// multi-checkout layout s/<name>: the last path segment of its name or url,
// without user info, ".git", trailing slashes or a port
// (RepositoryUtil.GetCloneDirectory). Unlike the official helper it never
// fails: input it cannot make sense of yields "".
func cloneDirectory(name string) string {
	start := 0
	if i := strings.Index(name, "://"); i >= 0 {
		start = i + len("://")
	}
	end := len(name) - 1
	start, _ = afterLast(name, '@', start, end)
	end = trimSlashesAndExtension(name, end)
	var slash bool
	start, slash = afterLast(name, '/', start, end)
	if !slash {
		end = trimPort(name, start, end)
	}
	start, _ = afterLast(name, ':', start, end)
	if start < 0 || end >= len(name) || end < start {
		return ""
	}
	return name[start : end+1]
}

// lastIndexIn is the last index of c in s[start..end], or -1.
func lastIndexIn(s string, c byte, start, end int) int {
	if start < 0 || end < 0 || start >= len(s) || end >= len(s) || start > end {
		return -1
	}
	i := strings.LastIndexByte(s[start:end+1], c)
	if i < 0 {
		return -1
	}
	return start + i
}

// afterLast moves start past the last c in s[start..end] when c is found
// before end.
func afterLast(s string, c byte, start, end int) (int, bool) {
	i := lastIndexIn(s, c, start, end)
	if i >= 0 && i < end {
		return i + 1, true
	}
	return start, false
}

func trimSlashesAndExtension(s string, end int) int {
	if end < 0 || end >= len(s) {
		return end
	}
	for end > 0 && (s[end] == '/' || unicode.IsSpace(rune(s[end]))) {
		end--
	}
	if ext := end - len(".git") + 1; ext >= 0 && strings.EqualFold(s[ext:end+1], ".git") {
		end -= len(".git")
	}
	for end > 0 && (s[end] == '/' || unicode.IsSpace(rune(s[end]))) {
		end--
	}
	return end
}

func trimPort(s string, start, end int) int {
	colon := lastIndexIn(s, ':', start, end)
	if colon >= 0 && (colon == end || allDigits(s, colon+1, end)) {
		return colon - 1
	}
	return end
}

func allDigits(s string, from, to int) bool {
	if from < 0 || to < 0 || from >= len(s) || to >= len(s) || from > to {
		return false
	}
	for i := from; i <= to; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkURL insists on an absolute URL, as the official provider does
// ("Repository url need to be an absolute uri.").
func checkURL(raw string) error {
	if raw == "" {
		return errors.New("the repository resource has no url")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("repository url %q is not an absolute URL (scheme://host/path)", redactURL(raw))
	}
	return nil
}

// redactURL hides a password embedded in a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	return u.Redacted()
}

// sameRepositoryURL compares two remote URLs the way .NET's Uri.Equals does
// for IsRepositoryOriginUrlMatch: user info and fragment are ignored, scheme
// and host compare case-insensitively, the rest exactly.
func sameRepositoryURL(a, b string) bool {
	ua, err1 := url.Parse(strings.TrimSpace(a))
	ub, err2 := url.Parse(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || !ua.IsAbs() || !ub.IsAbs() {
		return false
	}
	norm := func(u *url.URL) string {
		host := strings.ToLower(u.Host)
		switch {
		case strings.EqualFold(u.Scheme, "https") && strings.HasSuffix(host, ":443"):
			host = strings.TrimSuffix(host, ":443")
		case strings.EqualFold(u.Scheme, "http") && strings.HasSuffix(host, ":80"):
			host = strings.TrimSuffix(host, ":80")
		}
		p := u.EscapedPath()
		if p == "" {
			p = "/"
		}
		return strings.ToLower(u.Scheme) + "://" + host + p + "?" + u.RawQuery
	}
	return norm(ua) == norm(ub)
}

// authority is scheme://[userinfo@]host[:port] of the repository url: the
// official agent scopes the submodule and LFS extraheader to it
// (repositoryUrl.AbsoluteUri with PathAndQuery removed).
func authority(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	out := u.Scheme + "://"
	if u.User != nil {
		out += u.User.String() + "@"
	}
	return out + u.Host
}

// checkoutOptions reads the repository's checkoutOptions object; values
// are turned into strings the way Newtonsoft's ToObject<string> does.
func checkoutOptions(repo *wire.RepositoryResource) map[string]string {
	var raw json.RawMessage
	for k, v := range repo.Properties {
		if strings.EqualFold(k, checkoutOptionsKey) {
			raw = v
		}
	}
	if len(raw) == 0 {
		return nil
	}
	var obj map[string]any
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	out := map[string]string{}
	for k, v := range obj {
		switch x := v.(type) {
		case string:
			out[k] = x
		case bool:
			if x {
				out[k] = "True"
			} else {
				out[k] = "False"
			}
		case float64:
			out[k] = strings.TrimSuffix(fmt.Sprintf("%v", x), ".0")
		}
	}
	return out
}

// envLookup finds KEY in a K=V list (the last one wins, as exec does).
func envLookup(env []string, key string) (string, bool) {
	val, found := "", false
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

// withEnv returns env with key set to value (replacing earlier entries).
func withEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); ok && k == key {
			continue
		}
		out = append(out, kv)
	}
	return append(out, key+"="+value)
}
