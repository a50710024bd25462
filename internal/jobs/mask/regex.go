package mask

import (
	"bytes"
	"regexp"
	"strings"
)

// urlCredentials is the always-on rule for passwords in URLs
// (AdditionalMaskingRegexes.UrlSecretPattern):
//
//	(?<=//[^:/?#\n]+:)([\w\.~\-]|(%|%AZP25)[0-9a-fA-F]{2}|[!\$&'\(\)\*\+,;=]|:)+(?=@)
//
// RE2 has no lookaround, so the lookbehind and lookahead become part of the
// match and group 1 is the password. The result is the same: the user part
// cannot contain ':' and the password part cannot contain '@', so each
// "//user:" has at most one candidate and it must end right before an '@'.
// .NET's \w is Unicode ([\p{L}\p{Mn}\p{Nd}\p{Pc}]), spelled out here.
var urlCredentials = regexp.MustCompile(
	`//[^:/?#\n]+:((?:[\p{L}\p{Mn}\p{Nd}\p{Pc}.~\-]|%(?:AZP25)?[0-9a-fA-F]{2}|[!$&'()*+,;=:])+)@`)

// appendRegexHits appends the URL credential spans and the spans of every
// hint regex found in s.
func appendRegexHits[T text](sn *snapshot, s T, dst []span) []span {
	dst = appendURLCredentials(s, dst)
	for k, re := range sn.regexes {
		// Hints are mostly literal (a token's own text): one substring search
		// rules most lines out for less than the regexp machinery's setup.
		if p := sn.prefixes[k]; p != "" && index(s, p) < 0 {
			continue
		}
		switch s := any(s).(type) {
		case string:
			dst = appendOverlapping(dst, len(s), func(from int) []int { return re.FindStringIndex(s[from:]) })
		case []byte:
			dst = appendOverlapping(dst, len(s), func(from int) []int { return re.FindIndex(s[from:]) })
		}
	}
	return dst
}

// appendURLCredentials runs the URL rule only on the part of a line from its
// first "//", and only when an '@' follows there: a match cannot start
// before a "//" nor span a line break, and most log lines have neither.
func appendURLCredentials[T text](s T, dst []span) []span {
	for from := 0; from < len(s); {
		i := index(s[from:], "//")
		if i < 0 {
			break
		}
		i += from
		lineEnd := len(s)
		if j := index(s[i:], "\n"); j >= 0 {
			lineEnd = i + j
		}
		if at := index(s[i:lineEnd], "@"); at > 0 {
			var found [][]int
			switch seg := any(s[i:lineEnd]).(type) {
			case string:
				found = urlCredentials.FindAllStringSubmatchIndex(seg, -1)
			case []byte:
				found = urlCredentials.FindAllSubmatchIndex(seg, -1)
			}
			for _, m := range found {
				dst = append(dst, span{i + m[2], i + m[3]})
			}
		}
		from = lineEnd + 1
	}
	return dst
}

func index[T text](s T, sep string) int {
	switch s := any(s).(type) {
	case string:
		return strings.Index(s, sep)
	case []byte:
		return bytes.Index(s, []byte(sep))
	}
	panic("mask: unexpected text type")
}

// appendOverlapping collects a hint's matches the way the official masker's
// RegexSecret does: after a match at i the search resumes at i+1, not after
// the match, so a later match that overlaps an earlier one (and reaches
// further) is masked too.
func appendOverlapping(dst []span, n int, find func(from int) []int) []span {
	for from := 0; from < n; {
		loc := find(from)
		if loc == nil {
			break
		}
		start, end := from+loc[0], from+loc[1]
		if end > start {
			dst = append(dst, span{start, end})
		}
		from = start + 1
	}
	return dst
}
