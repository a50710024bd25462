package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/identity/identitytest"
)

func entraLikeJWT(t *testing.T, exp time.Time, aud string) string {
	t.Helper()
	return identitytest.Sign(identitytest.Key(0), nil, map[string]any{"aud": aud, "exp": exp.Unix(), "tid": "t1", "oid": "o1", "appid": "a1", "idtyp": "app"})
}

func TestExplicitPATIsBasicAsTheOfficialAgentSendsIt(t *testing.T) {
	src, err := Resolve(context.Background(), Config{Token: "  mypat123  \n", Env: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Scheme != "Basic" || tok.Value != base64.StdEncoding.EncodeToString([]byte("VstsAgent:mypat123")) {
		t.Fatalf("token %s %s", tok.Scheme, tok.Value)
	}
	if tok.Header() != "Basic VnN0c0FnZW50Om15cGF0MTIz" {
		t.Fatalf("header %q", tok.Header())
	}
	if src.Kind != KindPAT || !strings.Contains(src.Describe(), "Basic") {
		t.Fatalf("%s: %s", src.Kind, src.Describe())
	}
	// After a 401 there is nothing else to try: the same token comes back.
	again, err := src.Token(context.Background(), true)
	if err != nil || again != tok {
		t.Fatalf("refresh: %v", err)
	}
}

func TestExplicitJWTIsBearer(t *testing.T) {
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	jwt := entraLikeJWT(t, exp, adoResource)
	src, err := Resolve(context.Background(), Config{Token: jwt, Env: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := src.Token(context.Background(), false)
	if tok.Scheme != "Bearer" || tok.Value != jwt || !tok.ExpiresOn.Equal(exp) {
		t.Fatalf("token %s expires %v", tok.Scheme, tok.ExpiresOn)
	}

	expired := entraLikeJWT(t, time.Now().Add(-time.Hour), adoResource)
	_, err = Resolve(context.Background(), Config{Token: expired, Env: envOf(nil)})
	var ie *Error
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "expired") || strings.Contains(err.Error(), expired) {
		t.Fatalf("expired token: %v", err)
	}
}

func TestExplicitJWTForAnotherAudienceWarns(t *testing.T) {
	log, buf := captureLogger()
	jwt := entraLikeJWT(t, time.Now().Add(time.Hour), "https://management.azure.com/")
	if _, err := Resolve(context.Background(), Config{Token: jwt, Env: envOf(nil), Logger: log}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "not for Azure DevOps") || !strings.Contains(buf.String(), "management.azure.com") {
		t.Fatalf("log: %s", buf.String())
	}
}

func TestTokenFileRotation(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "token", "first-pat\n")
	log, buf := captureLogger()
	src, err := Resolve(context.Background(), Config{TokenFile: path, Env: envOf(nil), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	value := func(refresh bool) string {
		t.Helper()
		tok, err := src.Token(context.Background(), refresh)
		if err != nil {
			t.Fatal(err)
		}
		if tok.Scheme == "Basic" {
			raw, _ := base64.StdEncoding.DecodeString(tok.Value)
			return strings.TrimPrefix(string(raw), "VstsAgent:")
		}
		return tok.Value
	}
	if v := value(false); v != "first-pat" {
		t.Fatalf("got %q", v)
	}
	// Rotated by its writer: new size and mtime.
	writeFile(t, dir, "token", "second-pat-longer")
	if v := value(false); v != "second-pat-longer" {
		t.Fatalf("after rotation got %q", v)
	}
	if !strings.Contains(buf.String(), "token file changed") {
		t.Fatalf("rotation not logged: %s", buf.String())
	}
	// Same size and mtime (a fast rewrite): only a 401 makes goagent look again.
	st, _ := os.Stat(path)
	writeFile(t, dir, "token", "third-pat-sameeee")
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if v := value(false); v != "second-pat-longer" {
		t.Fatalf("unchanged stat should serve the cached token, got %q", v)
	}
	if v := value(true); v != "third-pat-sameeee" {
		t.Fatalf("refresh should re-read, got %q", v)
	}
	// A bearer token written into the same file is recognised.
	jwt := entraLikeJWT(t, time.Now().Add(time.Hour), adoResource)
	writeFile(t, dir, "token", jwt+"\r\n")
	if v := value(false); v != jwt {
		t.Fatal("bearer token not picked up")
	}
	if !strings.Contains(src.Describe(), "bearer token") || !strings.Contains(src.Describe(), path) {
		t.Fatalf("describe: %s", src.Describe())
	}
}

func TestTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Resolve(context.Background(), Config{TokenFile: dir + "/missing", Env: envOf(nil)}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing: %v", err)
	}
	empty := writeFile(t, dir, "empty", " \n")
	if _, err := Resolve(context.Background(), Config{TokenFile: empty, Env: envOf(nil)}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty: %v", err)
	}
	expiredJWT := entraLikeJWT(t, time.Now().Add(-time.Hour), adoResource)
	expired := writeFile(t, dir, "expired", expiredJWT)
	if _, err := Resolve(context.Background(), Config{TokenFile: expired, Env: envOf(nil)}); err == nil || !strings.Contains(err.Error(), "stopped refreshing") || strings.Contains(err.Error(), expiredJWT) {
		t.Fatalf("expired: %v", err)
	}
	// A file that disappears after start-up is reported, with the fix.
	ok := writeFile(t, dir, "ok", "pat")
	src, err := Resolve(context.Background(), Config{TokenFile: ok, Env: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(ok)
	if _, err := src.Token(context.Background(), false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("vanished: %v", err)
	}
}

func TestTokenFileBearerReReadWhenDue(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	first := entraLikeJWT(t, clk.Now().Add(10*time.Minute), adoResource)
	path := writeFile(t, dir, "token", first)
	st, _ := os.Stat(path)
	src, err := Resolve(context.Background(), Config{TokenFile: path, Env: envOf(nil), now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	second := entraLikeJWT(t, clk.Now().Add(20*time.Minute), adoResource)
	writeFile(t, dir, "token", second)
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	// Same stat: served from cache until the first token is due.
	if tok, _ := src.Token(context.Background(), false); tok.Value != first || len(first) != len(second) {
		t.Fatal("expected the cached token (and equal lengths for this test to mean anything)")
	}
	clk.Advance(9*time.Minute + 30*time.Second)
	if tok, _ := src.Token(context.Background(), false); tok.Value != second {
		t.Fatal("a due bearer token should make goagent re-read the file")
	}
}

func TestTokenAndTokenFileTogether(t *testing.T) {
	if _, err := Resolve(context.Background(), Config{Token: "a", TokenFile: "/x", Env: envOf(nil)}); err == nil {
		t.Fatal("accepted both")
	}
}
