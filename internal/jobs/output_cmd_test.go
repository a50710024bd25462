package jobs_test

import (
	"strings"
	"testing"
)

// Lines read together are handled in order around a logging command: those
// before a task.setsecret are written as they are, those after it masked.
func TestCommandInsideABatch(t *testing.T) {
	r := newRunner(t)
	// One printf: one write(2), one batch of lines.
	script := `printf 'before s3cr3t-v4lue\n##vso[task.setsecret]s3cr3t-v4lue\nafter s3cr3t-v4lue\n##vso[task.logissue type=warning]w s3cr3t-v4lue\nlast\n'`
	res, rep := run(t, r, message(nil, stepSpec{script: script}))
	if res != "succeededWithIssues" && res != "succeeded" {
		t.Fatalf("result %s", res)
	}
	log := rep.log(stepID(0))
	var got []string
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "before") || strings.HasPrefix(l, "after") || strings.HasPrefix(l, "##[warning]") || l == "last" {
			got = append(got, l)
		}
	}
	want := []string{"before s3cr3t-v4lue", "after ***", "##[warning]w ***", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("log lines %q, want %q\n%s", got, want, log)
	}
}
