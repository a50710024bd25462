// Package devserver is a local Azure DevOps emulator: the server side of the
// agent protocol described in ../shared/protocol/listener.md and worker.md §7.
//
// It serves the agent-facing REST API over real HTTPS (with a CA generated at
// start), verifies the agent's JWT client assertions, encrypts messages with
// per-session AES keys wrapped by RSA-OAEP-SHA1, hands out per-job access
// tokens, records every exchange, and can inject faults. It is the embedded
// default of `goagent exec` and the test bed of the whole project, so it
// follows the protocol notes and is never bent to fit the agent: where a
// client does something the official agent does not, the emulator answers as
// the service would and records a violation that tests can assert empty.
//
// In a test:
//
//	s, _ := devserver.Start(ctx, devserver.Options{Dir: t.TempDir()})
//	defer s.Close()
//	// run an agent with AZP_URL=s.URL(), AZP_TOKEN=s.PAT(), SSL_CERT_FILE=s.CAFile()
//	job, _ := s.QueueJob(msg, devserver.QueueOptions{})
//	result, err := job.Wait(ctx)
//	// job.Timeline(), job.LogLines(id), job.Feed(stepID), job.Violations(),
//	// s.Violations(), s.Recorder().Exchanges(), s.Faults().Add(…)
//
// It depends on nothing of the agent except internal/wire and the
// azure-devops-go-api model types.
package devserver
