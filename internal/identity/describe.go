package identity

import (
	"fmt"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/azdo"
)

// TokenInfo is what `goagent check` shows about a token: never the token.
type TokenInfo struct {
	Kind         string    // "personal access token (Basic)", "JWT bearer token", "opaque bearer token"
	TenantID     string    // tid
	ObjectID     string    // oid
	AppID        string    // appid (v1 tokens) or azp (v2)
	Audience     string    // aud, comma-separated when several
	IdentityType string    // idtyp: "app" or "user"
	UPN          string    // upn, or preferred_username
	Issuer       string    // iss
	ExpiresOn    time.Time // exp, or what the issuer said
}

// Describe decodes a token's claims without verifying it.
func Describe(tok azdo.Token) TokenInfo {
	if strings.EqualFold(tok.Scheme, "Basic") {
		return TokenInfo{Kind: "personal access token (Basic)"}
	}
	p, ok := decodeJWT(tok.Value)
	if !ok {
		return TokenInfo{Kind: "opaque bearer token", ExpiresOn: tok.ExpiresOn}
	}
	info := TokenInfo{
		Kind:         "JWT bearer token",
		TenantID:     p.str("tid"),
		ObjectID:     p.str("oid"),
		AppID:        p.str("appid"),
		Audience:     strings.Join(p.audiences(), ","),
		IdentityType: p.str("idtyp"),
		UPN:          p.str("upn"),
		Issuer:       p.str("iss"),
		ExpiresOn:    p.time("exp"),
	}
	if info.AppID == "" {
		info.AppID = p.str("azp")
	}
	if info.UPN == "" {
		info.UPN = p.str("preferred_username")
	}
	if info.ExpiresOn.IsZero() {
		info.ExpiresOn = tok.ExpiresOn
	}
	return info
}

// String renders the info on one line: "JWT bearer token: tenant …, app id …".
func (i TokenInfo) String() string {
	var parts []string
	add := func(label, v string) {
		if v != "" {
			parts = append(parts, label+" "+v)
		}
	}
	add("tenant", i.TenantID)
	add("app id", i.AppID)
	add("object id", i.ObjectID)
	add("identity type", i.IdentityType)
	add("user", i.UPN)
	add("audience", i.Audience)
	add("issuer", i.Issuer)
	if !i.ExpiresOn.IsZero() {
		parts = append(parts, "expires "+i.ExpiresOn.UTC().Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return i.Kind
	}
	return fmt.Sprintf("%s: %s", i.Kind, strings.Join(parts, ", "))
}
