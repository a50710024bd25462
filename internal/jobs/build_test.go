package jobs_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/jobs"
	"github.com/goagent-dev/goagent/internal/wire"
)

// blockingBuilds is a BuildService whose renames wait until their context
// ends, and whose tag calls answer at once.
type blockingBuilds struct {
	started chan struct{}
	once    sync.Once
	mu      sync.Mutex
	tags    []string
}

func (b *blockingBuilds) UpdateBuildNumber(ctx context.Context, _ string, _ int, _ string) (string, error) {
	b.once.Do(func() { close(b.started) })
	<-ctx.Done()
	return "", ctx.Err()
}

func (b *blockingBuilds) AddBuildTag(_ context.Context, project string, id int, tag string, bodyAPI bool) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tags = append(b.tags, tag)
	return append([]string(nil), b.tags...), nil
}

var buildMessageVars = map[string]wire.VariableValue{
	"system.teamProjectId": {Value: "6302cb6f-c9d9-44c2-ae60-84eff8845059"},
	"build.buildId":        {Value: "12"},
}

// TestBuildCommandCanceled: a job cancelled while a step waits for its
// Build call cancels the call and the step; an always() step after it still
// runs its own.
func TestBuildCommandCanceled(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	rep := newMem()
	svc := &blockingBuilds{started: make(chan struct{})}
	m := message(buildMessageVars,
		stepSpec{script: `echo "##vso[build.updatebuildnumber]9.9"`},
		stepSpec{script: `echo "##vso[build.addbuildtag]cleanup"`, condition: "always()"},
	)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan string, 1)
	go func() {
		res, _ := r.Run(ctx, jobs.Job{Message: m, Reporter: rep, Build: svc})
		done <- res
	}()
	select {
	case <-svc.started:
	case <-time.After(time.Minute):
		t.Fatal("the rename never started")
	}
	cancel(context.Canceled)
	select {
	case res := <-done:
		if res != "canceled" {
			t.Errorf("job %s", res)
		}
	case <-time.After(time.Minute):
		t.Fatal("the job did not end after cancel: the step kept waiting for its Build call")
	}
	if got := rep.rec(stepID(0)).Result; got != "canceled" {
		t.Errorf("step 0 %s\n%s", got, rep.log(stepID(0)))
	}
	log := rep.log(stepID(0))
	if !strings.Contains(log, "##[section]Async Command Start: Update Build Number") || !strings.Contains(log, "##[error]context canceled") ||
		strings.Index(log, "Async Command End: Update Build Number") > strings.Index(log, "Finishing: ") {
		t.Errorf("step 0 log:\n%s", log)
	}
	if got := rep.rec(stepID(1)).Result; got != "succeeded" || !strings.Contains(rep.log(stepID(1)), "Build '12' has following tags now: cleanup") {
		t.Errorf("always() step %s:\n%s", got, rep.log(stepID(1)))
	}
}

// TestBuildCommandWithoutService: with no Build connection the commands
// fail, Build.BuildNumber still changes (as the official command sets it
// first).
func TestBuildCommandWithoutService(t *testing.T) {
	t.Parallel()
	res, rep := run(t, newRunner(t), message(buildMessageVars,
		stepSpec{script: `echo "##vso[build.updatebuildnumber]9.9"`, continueOnError: true},
		stepSpec{script: `echo "number $BUILD_BUILDNUMBER"`},
	))
	if res != "succeededWithIssues" {
		t.Fatalf("result %s", res)
	}
	if log := rep.log(stepID(0)); !strings.Contains(log, "##[error]##vso[build.updatebuildnumber]: the job has no connection to the Build service") {
		t.Errorf("step 0 log:\n%s", log)
	}
	if log := rep.log(stepID(1)); !strings.Contains(log, "number 9.9") {
		t.Errorf("step 1 log:\n%s", log)
	}
}
