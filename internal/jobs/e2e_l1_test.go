package jobs_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/gitserver"
	"github.com/goagent-dev/goagent/internal/jobs"
	"github.com/goagent-dev/goagent/internal/wire"
)

// TestEmulatorL1JobMessage runs the job message the official agent keeps as
// test data (testdata/jobmessages/l1-checkout-cmdline.json, captured from the
// live service in 2020): its checkout of self is served by a local git server
// that demands the job's own bearer token, its CmdLine step prints Hello
// World!, and its mask hints are honoured.
func TestEmulatorL1JobMessage(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "jobmessages", "l1-checkout-cmdline.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m wire.JobRequestMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode the captured message: %v", err)
	}
	if len(m.Variables) != 62 || len(m.Mask) != 2 || len(m.Steps) != 2 {
		t.Fatalf("captured message: %d variables, %d mask hints, %d steps", len(m.Variables), len(m.Mask), len(m.Steps))
	}

	// The repository the message checks out, on a local git server.
	root := t.TempDir()
	repo, err := gitserver.CreateRepo(ctx, root, "MyFirstProject/_git/MyFirstProject")
	if err != nil {
		t.Fatal(err)
	}
	commit, err := repo.Commit(ctx, "master", "Update azure-pipelines-1.yml for Azure Pipelines", map[string]string{
		"azure-pipelines-1.yml": "steps:\n- script: echo Hello World!\n", "README.md": "MyFirstProject\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	git, err := gitserver.Start(gitserver.Options{Root: root, Credentials: []gitserver.Credential{gitserver.Bearer("not-yet-known")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { git.Close() })

	// Only its URLs change: the repository points at the local server, at
	// a commit that exists there. The emulator fills SystemVssConnection
	// with the job's token, as the service does.
	self := &m.Resources.Repositories[0]
	self.Properties["url"] = jsonString(git.RepoURL(repo.Name))
	self.Properties["version"] = jsonString(commit)
	// One step is added to show the mask hints at work.
	m.Steps = append(m.Steps, wire.Step{
		Type: "task", ID: "5b7e2c1d-0000-4000-8000-00000000000a", Name: "hints", DisplayName: "hints",
		Reference: wire.TaskReference{ID: wire.TaskCmdLine, Name: "CmdLine", Version: "2.164.0"},
		Inputs:    map[string]string{"script": "echo token is accessTokenSecret here"},
	})

	var work string
	l := newLab(t, labOptions{runner: func(r *jobs.Runner) { work = r.WorkDir }})
	j, err := l.srv.QueueJob(nil, devserver.QueueOptions{Bind: func(b devserver.Binding) (*wire.JobRequestMessage, error) {
		git.SetCredentials(gitserver.Bearer(b.AccessToken))
		return &m, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res := l.wait(j); res != "succeeded" {
		for _, r := range j.Timeline() {
			t.Logf("%s: %s\n%s", str(r.Name), result(r), logText(j, r.Id.String()))
		}
		t.Fatalf("result %s", res)
	}

	var names []string
	for _, r := range taskRecords(j) {
		names = append(names, str(r.Name)+"="+result(r))
	}
	want := "Initialize job=succeeded,Checkout MyFirstProject@master to s=succeeded,CmdLine=succeeded,hints=succeeded,Post-job: Checkout MyFirstProject@master to s=succeeded,Finalize Job=succeeded"
	if strings.Join(names, ",") != want {
		t.Errorf("records\n%s\nwant\n%s", strings.Join(names, ","), want)
	}
	if !hasLine(logMessages(j, m.Steps[1].ID), "Hello World!") {
		t.Errorf("CmdLine log:\n%s", logText(j, m.Steps[1].ID))
	}
	if !hasLine(logMessages(j, m.Steps[2].ID), "token is *** here") {
		t.Errorf("mask hint not honoured:\n%s", logText(j, m.Steps[2].ID))
	}
	// The checkout authenticated with the job's token, and only with it.
	reqs := git.Requests()
	if len(reqs) == 0 {
		t.Fatal("the git server saw no request")
	}
	bearer := 0
	for _, r := range reqs {
		if r.Status >= 400 {
			t.Errorf("git request %s %s answered %d", r.Method, r.Path, r.Status)
		}
		if strings.EqualFold(r.Authorization, "bearer "+j.Token()) {
			bearer++
		}
	}
	if bearer != len(reqs) {
		t.Errorf("%d of %d git requests carried the job's bearer token", bearer, len(reqs))
	}
	if b, err := os.ReadFile(filepath.Join(work, "1", "s", "README.md")); err != nil || string(b) != "MyFirstProject\n" {
		t.Errorf("checked-out sources: %q, %v", b, err)
	}
	secretsAbsent(t, l.srv, map[string]string{"job token": j.Token(), "mask hint": "accessTokenSecret"})
	l.checkViolations()
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}
