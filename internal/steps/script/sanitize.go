package script

import (
	"errors"
	"strings"
	"unicode/utf16"

	"github.com/goagent-dev/goagent/internal/steps"
)

// The arguments sanitizer of work item 75787 (Tasks/BashV3/helpers.ts,
// Tasks/PowerShellV2/helpers.ts, azure-pipelines-tasks-utility-common
// argsSanitizer.js 3.272.0). It runs only when one of three environment
// feature flags is "true": AZP_75787_ENABLE_NEW_LOGIC fails the step,
// AZP_75787_ENABLE_NEW_LOGIC_LOG warns, AZP_75787_ENABLE_COLLECT only
// collects telemetry (which goagent does not send).
//
// The task code works on JavaScript strings; the functions here work on
// UTF-16 code units so that every index moves exactly as it does there.

type sanitizer struct {
	expand      func(s []uint16, getenv func(string) string) []uint16
	split       string // argsSplitSymbols
	escape      uint16 // the lookbehind's escape character
	allowed     func(c uint16) bool
	notBoolNext bool // the (?!true|false) lookahead of the PowerShell pattern
	message     string
	debugStart  string
	debugExpand string
}

var bashSanitizer = &sanitizer{
	expand: expandBashEnv,
	split:  `\\`,
	escape: '\\',
	// [^a-zA-Z0-9\\ _'"\-=\/:.*+%]
	allowed: func(c uint16) bool {
		return isAlnum(c) || strings.ContainsRune(`\ _'"-=/:.*+%`, rune(c))
	},
	message:     msgBashArgsSanitized,
	debugStart:  "Validating file args...",
	debugExpand: "Expanded file args: ",
}

var powerShellSanitizer = &sanitizer{
	expand: expandPowerShellEnv,
	split:  "``",
	escape: '`',
	// [^\w\\` _'"\-=\/:\.*,+~?%\n#]
	allowed: func(c uint16) bool {
		return isAlnum(c) || strings.ContainsRune("_\\` '\"-=/:.*,+~?%\n#", rune(c))
	},
	notBoolNext: true,
	message:     msgPSArgsSanitized,
	debugStart:  "Validating file args",
	debugExpand: "Expanded args: ",
}

func isAlnum(c uint16) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// featureFlag is task-lib getBoolFeatureFlag: the task process's environment.
func featureFlag(env []string, name string) bool {
	v, _ := lookupEnv(env, name)
	return strings.EqualFold(v, "true")
}

// validateFileArgs is helpers.ts validateFileArgs.
func validateFileArgs(c steps.Console, env []string, args string, s *sanitizer) error {
	audit := featureFlag(env, "AZP_75787_ENABLE_NEW_LOGIC_LOG")
	activate := featureFlag(env, "AZP_75787_ENABLE_NEW_LOGIC")
	telemetry := featureFlag(env, "AZP_75787_ENABLE_COLLECT")
	if !activate && !audit && !telemetry {
		return nil
	}
	c.Debug(s.debugStart)
	getenv := func(name string) string { v, _ := lookupEnv(env, name); return v }
	expanded := string(utf16.Decode(s.expand(utf16.Encode([]rune(args)), getenv)))
	c.Debug(s.debugExpand + expanded)
	sanitized := sanitizeArgs(expanded, s)
	if sanitized != args && sanitized != expanded {
		if activate {
			return errors.New(s.message)
		}
		if audit {
			c.Warning(s.message)
		}
	}
	return nil
}

// sanitizeArgs is argsSanitizer.js sanitizeArgs: split on the escaped escape
// character, replace every character outside the allow list that is not
// preceded by the escape character, join back.
func sanitizeArgs(args string, s *sanitizer) string {
	if args == "" {
		return args
	}
	chunks := strings.Split(args, s.split)
	for i, chunk := range chunks {
		// Per UTF-16 code unit, like the non-unicode JavaScript pattern: an
		// astral character is removed twice.
		u := utf16.Encode([]rune(chunk))
		var out []uint16
		changed := false
		for j, c := range u {
			if !s.allowed(c) && (j == 0 || u[j-1] != s.escape) && !(s.notBoolNext && boolFollows(u[j+1:])) {
				out = append(out, removedSign...)
				changed = true
				continue
			}
			out = append(out, c)
		}
		if changed {
			chunks[i] = string(utf16.Decode(out))
		}
	}
	return strings.Join(chunks, s.split)
}

var removedSign = utf16.Encode([]rune("_#removed#_"))

// boolFollows is the lookahead (?!true|false) under the "i" flag.
func boolFollows(u []uint16) bool {
	return hasFoldPrefix(u, "true") || hasFoldPrefix(u, "false")
}

func hasFoldPrefix(u []uint16, p string) bool {
	if len(u) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if lowerASCII(u[i]) != uint16(p[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c uint16) uint16 {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func indexFrom(u []uint16, c uint16, from int) int {
	if from < 0 {
		from = 0
	}
	for i := from; i < len(u); i++ {
		if u[i] == c {
			return i
		}
	}
	return -1
}

// indexFoldFrom finds the ASCII prefix p case-insensitively from from on
// (the tasks search result.toLowerCase()).
func indexFoldFrom(u []uint16, p string, from int) int {
	if from < 0 {
		from = 0
	}
	for i := from; i+len(p) <= len(u); i++ {
		if hasFoldPrefix(u[i:], p) {
			return i
		}
	}
	return -1
}

// enclosingBrace is findEnclosingBraceIndex: the first '}' after target, or 0.
func enclosingBrace(u []uint16, target int) int {
	for i := target + 1; i < len(u); i++ {
		if u[i] == '}' {
			return i
		}
	}
	return 0
}

func concat(parts ...[]uint16) []uint16 {
	var out []uint16
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func sub(u []uint16, from int) []uint16 {
	if from >= len(u) {
		return nil
	}
	return u[from:]
}

func validEnvName(u []uint16) bool {
	if len(u) == 0 {
		return false
	}
	for i, c := range u {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// escapedAt reports the tasks' "result[prefixIndex - 1] === escapingSymbol
// && (!result[prefixIndex - 2] || result[prefixIndex - 2] !== escapingSymbol)".
func escapedAt(u []uint16, p int, esc uint16) (escaped, escapedEscape bool) {
	if p < 1 || u[p-1] != esc {
		return false, false
	}
	if p < 2 || u[p-2] != esc {
		return true, false
	}
	return false, true
}

// expandBashEnv is Tasks/BashV3/helpers.ts expandBashEnvVariables.
func expandBashEnv(res []uint16, getenv func(string) string) []uint16 {
	res = append([]uint16(nil), res...)
	start := 0
	for {
		p := indexFrom(res, '$', start)
		if p < 0 {
			break
		}
		if esc, _ := escapedAt(res, p, '\\'); esc {
			start++
			res = concat(res[:p-1], res[p:])
			continue
		}
		if q := indexFrom(res, '\'', start); q >= 0 && p > q {
			nq := indexFrom(res, '\'', q+1)
			if nq < 0 {
				break
			}
			start = nq + 1
			continue
		}
		brace := p+1 < len(res) && res[p+1] == '{'
		envStart := p + 1
		if brace {
			envStart++
		}
		var name []uint16
		var end int
		if brace {
			end = enclosingBrace(res, p)
			if end == 0 {
				break
			}
			if p+2 < len(res) && res[p+2] == '!' {
				start = end // indirect expansion is skipped
				continue
			}
			name = res[envStart:end]
		} else {
			rest := sub(res, envStart)
			k := 0
			for k < len(rest) && !strings.ContainsRune(` |"';`, rune(rest[k])) {
				k++
			}
			name, end = rest[:k], envStart+k
		}
		if !validEnvName(name) {
			start = end
			continue
		}
		val := utf16.Encode([]rune(getenv(string(utf16.Decode(name)))))
		if len(val) == 0 {
			start = end
			continue
		}
		tailFrom := end
		if brace {
			tailFrom++
		}
		res = concat(res[:p], val, sub(res, tailFrom))
		start = p + len(val)
	}
	return res
}

// expandPowerShellEnv is Tasks/PowerShellV2/helpers.ts
// expandPowerShellEnvVariables.
func expandPowerShellEnv(res []uint16, getenv func(string) string) []uint16 {
	const basicPrefix, bracedPrefix = "$env:", "${env:"
	res = append([]uint16(nil), res...)
	start := 0
	for {
		basic := indexFoldFrom(res, basicPrefix, start)
		braced := indexFoldFrom(res, bracedPrefix, start)
		if basic < 0 && braced < 0 {
			break
		}
		p := basic
		if p < 0 || braced >= 0 && braced < p {
			p = braced
		}
		brace := p == braced
		if esc, _ := escapedAt(res, p, '`'); esc {
			start++
			res = concat(res[:p-1], res[p:])
			continue
		}
		if q := indexFrom(res, '\'', start); q >= 0 && p > q {
			nq := indexFrom(res, '\'', q+1)
			if nq < 0 {
				break
			}
			start = nq + 1
			continue
		}
		var name []uint16
		var end int
		if brace {
			envStart := p + len(bracedPrefix)
			end = enclosingBrace(res, p)
			if end == 0 {
				break
			}
			name = res[envStart:end]
		} else {
			envStart := p + len(basicPrefix)
			rest := sub(res, envStart)
			k := 0
			for k < len(rest) && !strings.ContainsRune(` |"';$`, rune(rest[k])) {
				k++
			}
			name, end = rest[:k], envStart+k
		}
		if len(name) > 0 && name[0] == '`' {
			fixed := concat(utf16.Encode([]rune(basicPrefix)), name[1:])
			res = concat(res[:p], fixed, sub(res, end))
			start = p + len(fixed)
			continue
		}
		head := res[:p:p]
		if i := indexFrom(name, '`', 0); i >= 0 {
			// envName.split('`'): head gains the second piece.
			second := name[i+1:]
			if j := indexFrom(second, '`', 0); j >= 0 {
				second = second[:j]
			}
			head = concat(head, second)
			name = name[:i]
		}
		val := utf16.Encode([]rune(getenv(string(utf16.Decode(name)))))
		if len(val) == 0 {
			start = end
			continue
		}
		tailFrom := end
		if brace {
			tailFrom++
		}
		res = concat(head, val, sub(res, tailFrom))
		start = p + len(val)
	}
	return res
}
