package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/goagent-dev/goagent/internal/azdo"
)

// patUser is the Basic user name the official agent sends with a PAT
// (CredentialProvider.cs, PersonalAccessToken: new VssBasicCredential("VstsAgent", token)).
const patUser = "VstsAgent"

// explicitToken turns a secret handed in by the user into the header value the
// service expects: a JWT (an Entra access token fetched by a start script,
// say) goes out as Bearer, anything else is a PAT and goes out as Basic.
func explicitToken(secret string) (azdo.Token, jwtParts, bool) {
	if p, ok := decodeJWT(secret); ok {
		return azdo.Token{Scheme: "Bearer", Value: secret, ExpiresOn: p.time("exp")}, p, true
	}
	return azdo.Token{
		Scheme: "Basic",
		Value:  base64.StdEncoding.EncodeToString([]byte(patUser + ":" + secret)),
	}, jwtParts{}, false
}

// expiredSlack tolerates a little clock skew before goagent itself refuses a
// bearer token it was handed; the service has the final word.
const expiredSlack = time.Minute

// staticSource serves a token given on the command line or in AZP_TOKEN.
// There is nothing to refresh: after a 401 it returns the same token and the
// client reports the rejection, explained by ExplainUnauthorized.
type staticSource struct {
	tok  azdo.Token
	desc string
	now  func() time.Time
}

func (s *staticSource) Token(context.Context, bool) (azdo.Token, error) {
	if s.tok.Scheme == "Bearer" && !s.tok.ExpiresOn.IsZero() && s.now().After(s.tok.ExpiresOn.Add(expiredSlack)) {
		return azdo.Token{}, &Error{
			Credential: s.desc,
			Op:         "use token",
			Answer:     "the bearer token expired at " + s.tok.ExpiresOn.UTC().Format(time.RFC3339),
			Fix: "a token passed in AZP_TOKEN cannot be refreshed: pass a file that something keeps fresh " +
				"(AZP_TOKEN_FILE), or let goagent get tokens itself (unset AZP_TOKEN and use --auth managed-identity, " +
				"workload-identity or service-principal)",
		}
	}
	return s.tok, nil
}

// fileSource serves the token in a file, re-read whenever the file changes on
// disk (size or modification time), after every 401, and whenever the bearer
// token it holds is due for refresh — so a sidecar or a Kubernetes projected
// volume that rotates the file is picked up without a restart.
type fileSource struct {
	path string
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	loaded  bool
	modTime time.Time
	size    int64
	content string
	tok     azdo.Token
	bearer  bool
}

func newFileSource(path string, log *slog.Logger, now func() time.Time) *fileSource {
	return &fileSource{path: path, log: log, now: now}
}

func (f *fileSource) describe() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	what := "personal access token (sent as Basic)"
	if f.bearer {
		what = "bearer token (JWT)"
	}
	return fmt.Sprintf("%s from token file %s (re-read when it changes)", what, f.path)
}

func (f *fileSource) Token(_ context.Context, refresh bool) (azdo.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.path)
	if err != nil {
		return azdo.Token{}, f.readError(err)
	}
	due := false
	if f.loaded && f.bearer && !f.tok.ExpiresOn.IsZero() {
		due = !f.now().Before(fetched{tok: f.tok, obtained: f.modTime}.refreshAt())
	}
	if f.loaded && !refresh && !due && st.ModTime().Equal(f.modTime) && st.Size() == f.size {
		return f.tok, nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return azdo.Token{}, f.readError(err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return azdo.Token{}, &Error{
			Credential: "token file " + f.path,
			Op:         "read token",
			Answer:     "the file is empty",
			Fix:        "write a personal access token or an Entra access token into the file, or point AZP_TOKEN_FILE at the right file",
		}
	}
	tok, _, bearer := explicitToken(secret)
	changed := f.loaded && secret != f.content
	f.loaded, f.modTime, f.size, f.content, f.tok, f.bearer = true, st.ModTime(), st.Size(), secret, tok, bearer
	if changed {
		f.log.Info("token file changed; using the new token", "file", f.path, "bearer", bearer,
			"expires", expiryAttr(tok.ExpiresOn))
	}
	if bearer && !tok.ExpiresOn.IsZero() && f.now().After(tok.ExpiresOn.Add(expiredSlack)) {
		return azdo.Token{}, &Error{
			Credential: "bearer token from token file " + f.path,
			Op:         "use token",
			Answer:     "the token in the file expired at " + tok.ExpiresOn.UTC().Format(time.RFC3339),
			Fix:        "whatever writes this file has stopped refreshing it; restart it, or let goagent get tokens itself (--auth managed-identity, workload-identity or service-principal)",
		}
	}
	return tok, nil
}

func (f *fileSource) readError(err error) error {
	fix := "check that AZP_TOKEN_FILE names a readable file (mounted secret or volume)"
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fix = "the file does not exist: check AZP_TOKEN_FILE and that the secret or volume holding it is mounted"
	case errors.Is(err, fs.ErrPermission):
		fix = "goagent's user may not read the file: fix its permissions or the volume's fsGroup"
	}
	return &Error{Credential: "token file " + f.path, Op: "read token", Err: err, Fix: fix}
}
