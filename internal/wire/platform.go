package wire

import (
	"runtime"
	"strings"
)

// AgentOS is the Agent.OS value the official agent reports for this
// platform (capability, agent.os variable): Linux, Darwin, Windows_NT.
func AgentOS() string {
	switch runtime.GOOS {
	case "linux":
		return "Linux"
	case "darwin":
		return "Darwin"
	case "windows":
		return "Windows_NT"
	}
	return runtime.GOOS
}

// AgentArchitecture is the Agent.OSArchitecture value: X64, X86, ARM, ARM64.
func AgentArchitecture() string {
	switch runtime.GOARCH {
	case "amd64":
		return "X64"
	case "386":
		return "X86"
	case "arm":
		return "ARM"
	case "arm64":
		return "ARM64"
	}
	return strings.ToUpper(runtime.GOARCH)
}

// PackageRuntime is the official agent package's runtime id for this
// platform (linux-x64, osx-arm64, …), part of its User-Agent.
func PackageRuntime() string {
	arch := map[string]string{"amd64": "x64", "arm64": "arm64", "arm": "arm", "386": "x86"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	os := map[string]string{"linux": "linux", "darwin": "osx", "windows": "win"}[runtime.GOOS]
	if os == "" {
		os = runtime.GOOS
	}
	return os + "-" + arch
}
