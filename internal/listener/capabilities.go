package listener

import (
	"os"
	"os/exec"
	"strings"

	"github.com/goagent-dev/goagent/internal/wire"
)

// credentialEnv are the agent's own credentials. They are never published
// as capabilities and never reach a step's environment unless the user
// names them in --pass-env.
var credentialEnv = []string{
	"AZP_TOKEN", "AZP_TOKEN_FILE", "AZP_AUTH",
	"IDENTITY_HEADER", "IDENTITY_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET",
	"AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
	"AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "AZURE_USERNAME", "AZURE_PASSWORD",
	"AZURE_KUBERNETES_TOKEN_PROXY", "AZURE_KUBERNETES_CA_FILE", "AZURE_KUBERNETES_CA_DATA", "AZURE_KUBERNETES_SNI_NAME",
	"SYSTEM_ACCESSTOKEN", "VSTS_AGENT_INPUT_TOKEN", "VSTS_AGENT_INPUT_PASSWORD", "VSTS_AGENT_INPUT_CLIENTSECRET",
	"VSTS_HTTP_PROXY_PASSWORD", "VSTS_AGENT_INPUT_PROXYPASSWORD", "VSTS_AGENT_INPUT_SSLCLIENTCERTPASSWORD",
}

// IsCredentialEnv reports whether an environment variable carries one of the
// agent's credentials.
func IsCredentialEnv(name string) bool {
	for _, c := range credentialEnv {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}

// ScrubEnv returns env without the agent's credentials, except those named
// in pass (the user's explicit opt-in).
func ScrubEnv(env []string, pass []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if IsCredentialEnv(k) && !contains(pass, k) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(strings.TrimSpace(x), s) {
			return true
		}
	}
	return false
}

// wellKnownIgnored is EnvironmentCapabilitiesProvider's noise list.
var wellKnownIgnored = map[string]bool{
	"comp_wordbreaks": true, "ls_colors": true, "TERM": true, "TERM_PROGRAM": true,
	"TERM_PROGRAM_VERSION": true, "SHLVL": true, "PSMODULEPATH": true, "SYSTEM_ACCESSTOKEN": true,
}

// tools are the executables NixCapabilitiesProvider looks for on PATH, by
// capability name.
var tools = [][2]string{
	{"ant", "ant"}, {"bundler", "bundle"}, {"clang", "clang"}, {"cmake", "cmake"}, {"curl", "curl"},
	{"docker", "docker"}, {"dotnet", "dotnet"}, {"git", "git"}, {"gulp", "gulp"}, {"java", "java"},
	{"make", "make"}, {"maven", "mvn"}, {"node.js", "node"}, {"npm", "npm"}, {"python", "python"},
	{"python3", "python3"}, {"sh", "sh"}, {"bash", "bash"}, {"subversion", "svn"}, {"svn", "svn"},
	{"pwsh", "pwsh"}, {"go", "go"}, {"az", "az"}, {"kubectl", "kubectl"}, {"helm", "helm"}, {"terraform", "terraform"},
}

// SystemCapabilities computes what the agent reports about itself
// (listener.md §6.2): environment variables (minus noise, long values,
// VSO_AGENT_IGNORE and credentials), then the user's capabilities (the
// official agent's .capabilities file, UserCapabilitiesProvider, lands in the
// same systemCapabilities; the service's userCapabilities are what people set
// in the web UI), tools on PATH, and the Agent.* values, which override.
func SystemCapabilities(env []string, user map[string]string, agentName, agentVersion, goagentVersion string) map[string]string {
	caps := map[string]string{}
	ignore := map[string]bool{}
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == "VSO_AGENT_IGNORE" {
			for _, n := range strings.Split(v, ",") {
				ignore[strings.TrimSpace(n)] = true
			}
		}
	}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || wellKnownIgnored[k] || ignore[k] || len(v) >= 1024 || IsCredentialEnv(k) || strings.HasPrefix(k, "VSTS_AGENT_INPUT_") {
			continue
		}
		caps[k] = v
	}
	for k, v := range user {
		caps[k] = v
	}
	for _, t := range tools {
		if p, err := exec.LookPath(t[1]); err == nil {
			caps[t[0]] = p
		}
	}
	host, _ := os.Hostname()
	caps["Agent.Name"] = agentName
	caps["Agent.Version"] = agentVersion
	caps["Agent.OS"] = wire.AgentOS()
	caps["Agent.OSArchitecture"] = wire.AgentArchitecture()
	caps["Agent.ComputerName"] = host
	caps["Agent.HomeDirectory"] = homeDirectory()
	caps["InteractiveSession"] = "False"
	caps["goagent.version"] = goagentVersion
	return caps
}

func homeDirectory() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if i := strings.LastIndexByte(exe, '/'); i > 0 {
		return exe[:i]
	}
	return exe
}
