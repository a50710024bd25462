package webui

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"
)

func TestDecodeFrame(t *testing.T) {
	run, step := "6F9619FF-8B86-D011-B42D-00C04FC964FF", "0b0e5c8e-5e3c-4a53-9a57-7f0d0b6a1c11"
	cases := []struct {
		frame string
		want  watch
		err   string
	}{
		{frame: `{"type":"watch"}`, want: watch{Type: "watch"}},
		{frame: `{"type":"watch","run":"` + run + `"}`, want: watch{Type: "watch", Run: strings.ToLower(run)}},
		{frame: `{"type":"watch","run":"` + run + `","step":"` + step + `","after":12,"gen":"ab.1"}`, want: watch{Type: "watch", Run: strings.ToLower(run), Step: step, After: 12, Gen: "ab.1"}},
		{frame: ` {"type":"watch"} `, want: watch{Type: "watch"}},
		{frame: `{"type":"watch","run":"{` + run + `}"}`, err: "is not an id"},
		{frame: `{"type":"watch","run":"urn:uuid:` + run + `"}`, err: "is not an id"},
		{frame: `{"type":"watch","run":"` + strings.Repeat("x", 500) + `"}`, err: "…"},
		{frame: `{"type":"watch","after":99999999999999999999}`, err: "must be a int"},
		{frame: `null`, err: "unknown message type"},
		{frame: `{"type":"watch"`, err: "cut short"},
	}
	for _, tc := range cases {
		got, err := decodeFrame([]byte(tc.frame))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("decodeFrame(%.60s): %v, want an error saying %q", tc.frame, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("decodeFrame(%.60s) = %+v, %v; want %+v", tc.frame, got, err, tc.want)
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"watch"}`,
		`{"type":"watch","run":"6f9619ff-8b86-d011-b42d-00c04fc964ff","step":"0b0e5c8e-5e3c-4a53-9a57-7f0d0b6a1c11","after":3,"gen":"x.0"}`,
		`{"type":"watch","after":-1}`,
		`{"type":"nope"}`,
		`[]`, `"watch"`, `{}`, ``, `{"type":"watch"}{}`,
		"{\"type\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := decodeFrame(b)
		if err != nil {
			if msg := err.Error(); !utf8.ValidString(msg) || len(msg) > 300 {
				t.Fatalf("error message is not short valid text: %q", msg)
			}
			return
		}
		if w.Type != "watch" || w.After < 0 || len(w.Gen) > maxGen || (w.Step != "" && w.Run == "") {
			t.Fatalf("accepted an invalid frame: %+v", w)
		}
		for _, id := range []string{w.Run, w.Step} {
			if id != "" && (uuid.MustParse(id).String() != id) {
				t.Fatalf("id %q is not canonical", id)
			}
		}
		// What was accepted survives a round trip unchanged.
		again, err := decodeFrame(encode(w))
		if err != nil || again != w {
			t.Fatalf("round trip of %+v: %+v, %v", w, again, err)
		}
		var m map[string]any
		if json.Unmarshal(encode(w), &m) != nil {
			t.Fatalf("re-encoded frame is not JSON")
		}
	})
}
