package devserver

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// goGitRepo builds a work tree repository with n commits on main using
// go-git only, so the native upload-pack is tested without git installed.
func goGitRepo(t *testing.T, n int) (gitDir string, commits []plumbing.Hash) {
	t.Helper()
	dir := t.TempDir()
	r, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")}})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "t", Email: "t@example.invalid", When: time.Unix(1700000000, 0)}
	for i := 1; i <= n; i++ {
		name := "f" + strconv.Itoa(i) + ".txt"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Repeat("line\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			t.Fatal(err)
		}
		h, err := wt.Commit("commit "+strconv.Itoa(i), &git.CommitOptions{Author: sig})
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, h)
	}
	return filepath.Join(dir, ".git"), commits
}

// pktRequest encodes a v0 upload-pack request body.
func pktRequest(first string, lines ...string) []byte {
	var b bytes.Buffer
	e := pktline.NewEncoder(&b)
	e.EncodeString(first + "\n")
	for _, l := range lines {
		if l == "" {
			e.Flush()
			continue
		}
		e.EncodeString(l + "\n")
	}
	return b.Bytes()
}

// responseLines decodes the packet lines before the pack ("PACK" stands
// for the pack, "0000" for a flush; side-band data is reported by band).
func responseLines(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	rest := body
	for len(rest) > 0 {
		if bytes.HasPrefix(rest, []byte("PACK")) {
			return append(out, "PACK")
		}
		if len(rest) < 4 {
			t.Fatalf("truncated response %q", rest)
		}
		n, err := strconv.ParseUint(string(rest[:4]), 16, 16)
		if err != nil {
			t.Fatalf("bad packet length in %q", rest)
		}
		if n == 0 {
			out = append(out, "0000")
			rest = rest[4:]
			continue
		}
		payload := rest[4:n]
		rest = rest[n:]
		switch {
		case len(payload) > 0 && payload[0] == 1:
			if bytes.HasPrefix(payload[1:], []byte("PACK")) {
				out = append(out, "band1 PACK")
			}
		case len(payload) > 0 && payload[0] == 2:
			// progress
		default:
			out = append(out, strings.TrimSuffix(string(payload), "\n"))
		}
	}
	return out
}

func TestNativeUploadPackNegotiation(t *testing.T) {
	gitDir, c := goGitRepo(t, 4)
	n, err := openNativeRepo(gitDir)
	if err != nil {
		t.Fatal(err)
	}
	tip, c2, c1 := c[3].String(), c[1].String(), c[0].String()
	unknown := strings.Repeat("ab", 20)
	for _, tc := range []struct {
		name string
		body []byte
		want []string
	}{
		{"clone", pktRequest("want "+tip+" ofs-delta", "", "done"), []string{"NAK", "PACK"}},
		{"clone with side-band", pktRequest("want "+tip+" side-band-64k no-progress", "", "done"), []string{"NAK", "band1 PACK", "0000"}},
		{"multi_ack_detailed round", pktRequest("want "+tip+" multi_ack_detailed", "", "have "+c2, "have "+unknown, ""), []string{"ACK " + c2 + " common", "NAK"}},
		{"multi_ack_detailed done", pktRequest("want "+tip+" multi_ack_detailed", "", "have "+c2, "done"), []string{"ACK " + c2 + " common", "ACK " + c2, "PACK"}},
		{"multi_ack done", pktRequest("want "+tip+" multi_ack", "", "have "+c2, "have "+c1, "done"), []string{"ACK " + c2 + " continue", "ACK " + c1 + " continue", "ACK " + c1, "PACK"}},
		{"no multi_ack: only the first ACK", pktRequest("want "+tip, "", "have "+c2, "have "+c1, "done"), []string{"ACK " + c2, "PACK"}},
		{"no multi_ack round with common: no NAK", pktRequest("want "+tip, "", "have "+c2, ""), []string{"ACK " + c2}},
		{"nothing in common", pktRequest("want "+tip+" multi_ack_detailed", "", "have "+unknown, "done"), []string{"NAK", "PACK"}},
		{"deepen 1", pktRequest("want "+tip+" shallow", "deepen 1", "", "done"), []string{"shallow " + tip, "0000", "NAK", "PACK"}},
		{"deepen 2 from a shallow client", pktRequest("want "+tip+" shallow", "shallow "+tip, "deepen 2", "", "have "+tip, "done"), []string{"shallow " + c[2].String(), "unshallow " + tip, "0000", "ACK " + tip, "PACK"}},
		{"unshallow", pktRequest("want "+tip+" shallow", "shallow "+tip, "deepen 2147483647", "", "done"), []string{"unshallow " + tip, "0000", "NAK", "PACK"}},
		{"unknown want", pktRequest("want "+unknown, "", "done"), []string{"ERR upload-pack: not our ref " + unknown}},
		{"capability not advertised", pktRequest("want "+tip+" no-done", "", "done"), []string{`ERR git upload-pack: the client asked for capability "no-done", which this server did not advertise`}},
		{"filter without the capability", pktRequest("want "+tip, "filter blob:none", "", "done"), []string{"ERR git upload-pack: filtering capability not negotiated"}},
		{"garbage", pktRequest("hello"), []string{"ERR git upload-pack: protocol error, expected to get object ID, not 'hello'"}},
		{"no wants", pktRequest("deepen 1", ""), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			n.serveUploadPack(context.Background(), rec, "", tc.body)
			got := responseLines(t, rec.Body.Bytes())
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("response\n got %q\nwant %q", got, tc.want)
			}
			if rec.Header().Get("Content-Type") != "application/x-git-upload-pack-result" {
				t.Errorf("content type %q", rec.Header().Get("Content-Type"))
			}
		})
	}
}

func TestNativeAdvertisement(t *testing.T) {
	gitDir, c := goGitRepo(t, 2)
	r, err := git.PlainOpen(filepath.Dir(gitDir))
	if err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "t", Email: "t@example.invalid", When: time.Unix(1700000000, 0)}
	tag, err := r.CreateTag("v1", c[0], &git.CreateTagOptions{Tagger: sig, Message: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := openNativeRepo(gitDir)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	n.serveAdvertisement(rec)
	got := responseLines(t, rec.Body.Bytes())
	caps := strings.Join(nativeCapabilities, " ") + " symref=HEAD:refs/heads/main " + nativeAgent
	want := []string{
		"# service=git-upload-pack", "0000",
		c[1].String() + " HEAD\x00" + caps,
		c[1].String() + " refs/heads/main",
		tag.Hash().String() + " refs/tags/v1",
		c[0].String() + " refs/tags/v1^{}",
		"0000",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("advertisement\n got %q\nwant %q", got, want)
	}

	// An empty repository advertises its capabilities on a zero id.
	empty := t.TempDir()
	if _, err := git.PlainInit(empty, true); err != nil {
		t.Fatal(err)
	}
	n, err = openNativeRepo(empty)
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	n.serveAdvertisement(rec)
	got = responseLines(t, rec.Body.Bytes())
	if len(got) != 4 || !strings.HasPrefix(got[2], plumbing.ZeroHash.String()+" capabilities^{}\x00") {
		t.Errorf("empty repository advertisement %q", got)
	}
}

func FuzzParseUploadRequest(f *testing.F) {
	tip := strings.Repeat("1", 40)
	for _, seed := range [][]byte{
		pktRequest("want "+tip+" multi_ack_detailed side-band-64k", "shallow "+tip, "deepen 3", "", "have "+tip, "", "done"),
		pktRequest("want "+tip, "", "done"),
		pktRequest("deepen 0"),
		pktRequest("want x"),
		[]byte("0000"),
		[]byte("00"),
		[]byte("zzzz"),
		[]byte("0009done\n"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseUploadRequest(bytes.NewReader(body))
		if err != nil {
			if _, ok := err.(*protocolError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if len(req.wants) > 0 && len(req.haves) > 0 && len(req.rounds) == 0 {
			t.Fatalf("haves without a round: %+v", req)
		}
		if req.depth < 0 {
			t.Fatalf("negative depth %d", req.depth)
		}
	})
}
