package identitytest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestTransportStaysLocal(t *testing.T) {
	c := &http.Client{Transport: Transport(nil, nil)}
	for _, u := range []string{"https://login.microsoftonline.com/x", "http://169.254.169.254/metadata/identity/oauth2/token"} {
		if resp, err := c.Get(u); err == nil {
			resp.Body.Close()
			t.Fatalf("%s was reached", u)
		}
	}
}

func TestIMDSThroughTransport(t *testing.T) {
	imds := NewIMDS(t)
	c := imds.Client(nil)
	get := func(header bool, query string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, "http://169.254.169.254/metadata/identity/oauth2/token?"+query, nil)
		if header {
			req.Header.Set("Metadata", "true")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var v map[string]any
		_ = json.Unmarshal(body, &v)
		return resp.StatusCode, v
	}
	if status, v := get(false, ""); status != 400 || v["error"] != "invalid_request" || imds.Probes() != 1 {
		t.Fatalf("probe: %d %v", status, v)
	}
	status, v := get(true, "api-version=2018-02-01&resource="+AzureDevOpsResource)
	if status != 200 || v["access_token"] == nil || imds.Calls() != 1 {
		t.Fatalf("token: %d %v", status, v)
	}
	if status, v := get(true, "api-version=2018-02-01&resource=r&client_id=nobody"); status != 400 || !strings.Contains(v["error_description"].(string), "Identity not found") {
		t.Fatalf("unassigned: %d %v", status, v)
	}
}

func TestManagedIdentityHeaderRequired(t *testing.T) {
	m := NewManagedIdentity(t)
	resp, err := m.Client().Get(m.Endpoint() + "?api-version=2019-08-01&resource=" + AzureDevOpsResource)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || m.Calls() != 0 {
		t.Fatalf("status %d calls %d", resp.StatusCode, m.Calls())
	}
}
