package mask

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// minBase64Fragment is the shortest base64 alignment fragment registered.
// A fragment of n base64 characters carries 6n bits; with 6 characters (36
// bits) a chance match in base64-heavy output (hashes, tokens, blobs at
// ~100 MB/s) is about one per 2^36 positions, whereas 4 characters would
// falsely mask text several times a second. It applies only to the
// fragments this package adds beyond the official agent (see base64Forms),
// never to the full base64 value the official worker registers.
const minBase64Fragment = 6

// form is one derived pattern; base64Fragment marks the alignment fragments,
// which have their own minimum length.
type form struct {
	text           string
	base64Fragment bool
}

// derivedForms lists the patterns registered for secret v, after the official
// agent (Worker.InitializeSecretMasker, Worker.AddUserSuppliedSecret and the
// value encoders installed by HostContext.CreateSecretMasker):
//
//   - v, v unquoted when wrapped in ' or ", v trimmed of CR, LF and space;
//   - v with %→%AZP25, CR→%0D, LF→%0A (how logging commands escape it) and v
//     with only CR/LF escaped (when DECODE_PERCENTS is off), each with its
//     own unquoted and trimmed forms;
//   - base64 of the UTF-8 bytes (the official form, padded), plus the
//     fragments that stay fixed when the secret sits at any byte offset
//     inside a larger base64 payload ("user:secret" in Basic auth);
//   - every form above passed through each value encoder: JSON string
//     escape, URI data escape and backslash unescape.
//
// Duplicates are harmless; the caller filters by length.
func derivedForms(v string) []form {
	var bases []string
	bases = appendUserSupplied(bases, v)
	bases = appendUserSupplied(bases, escapeLoggingCommand(v, true))
	bases = appendUserSupplied(bases, escapeLoggingCommand(v, false))

	var forms []form
	for _, b := range bases {
		forms = append(forms, form{text: b})
	}
	// base64 of the value as given and of its unquoted/trimmed forms: a
	// script that does `echo -n "$SECRET" | base64` encodes the trimmed text.
	for _, b := range appendUserSupplied(nil, v) {
		forms = appendBase64Forms(forms, b)
	}

	out := make([]form, 0, 4*len(forms))
	for _, f := range forms {
		out = append(out, f,
			form{text: jsonStringEscape(f.text), base64Fragment: f.base64Fragment},
			form{text: uriDataEscape(f.text), base64Fragment: f.base64Fragment},
			form{text: backslashUnescape(f.text), base64Fragment: f.base64Fragment},
		)
	}
	return out
}

// appendUserSupplied appends s, its unquoted form and its trimmed form, as
// Worker.AddUserSuppliedSecret registers them. .NET's String.Trim(char)
// removes every leading and trailing occurrence, and so does this.
func appendUserSupplied(dst []string, s string) []string {
	dst = append(dst, s)
	for _, q := range []string{"'", `"`} {
		if strings.HasPrefix(s, q) && strings.HasSuffix(s, q) {
			dst = append(dst, strings.Trim(s, q))
		}
	}
	return append(dst, strings.Trim(s, "\r\n "))
}

// escapeLoggingCommand escapes s as the worker writes values inside logging
// commands; percents=false gives the variant with only CR and LF escaped.
func escapeLoggingCommand(s string, percents bool) string {
	if percents {
		s = strings.ReplaceAll(s, "%", "%AZP25")
	}
	s = strings.ReplaceAll(s, "\r", "%0D")
	return strings.ReplaceAll(s, "\n", "%0A")
}

// appendBase64Forms appends the padded standard base64 of s (what the
// official worker registers) and the alignment fragments.
//
// Base64 turns each 3 bytes into 4 characters, so the characters that encode
// a secret depend on the secret's byte offset modulo 3 within the encoded
// payload, and the first and last character usually mix in neighbouring
// bytes. For each offset k in 0..2 the fragment is the run of characters
// whose 6 bits come from the secret alone: from ceil(8k/6) to
// floor(8(k+n)/6) of base64(k zero bytes + secret). Such a fragment appears
// verbatim wherever the secret is encoded at that alignment, whatever
// surrounds it. The GitHub Actions runner registers base64 of the value
// shifted by one and two bytes instead, which still carries padding and
// partial characters and so misses the secret in the middle of a payload.
// Fragments are also registered in the URL-safe alphabet (JWTs, URL tokens)
// when it differs. Fewer than minBase64Fragment characters are not
// registered (see there).
func appendBase64Forms(dst []form, s string) []form {
	b := []byte(s)
	dst = append(dst, form{text: base64.StdEncoding.EncodeToString(b)})
	buf := make([]byte, len(b)+2)
	for k := 0; k < 3; k++ {
		clear(buf[:k])
		copy(buf[k:], b)
		enc := base64.StdEncoding.EncodeToString(buf[:k+len(b)])
		from := (8*k + 5) / 6
		to := 8 * (k + len(b)) / 6
		if to-from <= 0 {
			continue
		}
		frag := enc[from:to]
		dst = append(dst, form{text: frag, base64Fragment: true})
		if url := toURLAlphabet(frag); url != frag {
			dst = append(dst, form{text: url, base64Fragment: true})
		}
	}
	return dst
}

func toURLAlphabet(s string) string {
	if !strings.ContainsAny(s, "+/") {
		return s
	}
	return strings.NewReplacer("+", "-", "/", "_").Replace(s)
}

// jsonStringEscape escapes s as Newtonsoft's JsonConvert.ToString does
// without the surrounding quotes (ValueEncoders.JsonStringEscape): quote and
// backslash, the short escapes for BS, FF, LF, CR, TAB, \u00xx (lower-case
// hex) for the other control characters, and \u0085, \u2028, \u2029.
func jsonStringEscape(s string) string {
	var b strings.Builder
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x85 || r == 0x2028 || r == 0x2029:
			b.WriteString(`\u`)
			b.WriteByte(hex[r>>12&0xf])
			b.WriteByte(hex[r>>8&0xf])
			b.WriteByte(hex[r>>4&0xf])
			b.WriteByte(hex[r&0xf])
		default:
			// Invalid UTF-8 is copied as is: it can only match itself.
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// uriDataEscape is .NET's Uri.EscapeDataString: every byte of the UTF-8
// form except the RFC 3986 unreserved characters becomes %XX (upper case).
func uriDataEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// backslashUnescape is the official "BackslashEscape" value encoder. Despite
// its name it removes escaping: the agent's test registers `abc\\def\'\"ghi\t`
// and expects `abc\def'"ghi<TAB>` masked. The encoder's source is not public
// (it ships in the vss-api-netcore package); this decodes \\, \', \" and \t
// in one left-to-right pass and leaves every other backslash alone.
func backslashUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case '\\', '\'', '"':
				b.WriteByte(s[i+1])
				i++
				continue
			case 't':
				b.WriteByte('\t')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
