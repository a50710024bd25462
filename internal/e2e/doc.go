// Package e2e holds end-to-end tests of the goagent binary: TestMain builds
// cmd/goagent once (CGO_ENABLED=0, as released), and every test runs it as a
// process with a clean environment against the Azure DevOps emulator
// (internal/devserver) over HTTPS on 127.0.0.1, with the fake identity
// endpoints of internal/identity/identitytest where a test needs Entra or a
// managed identity. The tests judge the agent by what the emulator saw, what
// the agent left on disk, its exit status and its output.
//
// The package has no code besides this comment: everything is in the tests.
package e2e
