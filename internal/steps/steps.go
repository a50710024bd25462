// Package steps runs task steps natively, looked up by task id and major
// version: CmdLine@2, Bash@3, PowerShell@2 and the built-in checkout
// (../shared/protocol/worker.md §2). It knows nothing about HTTP or timelines:
// the job runner (internal/jobs) resolves inputs and the environment, hands a
// step an Exec, and turns what the step writes and returns into records,
// console lines and results.
package steps

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/wire"
)

// Definition is a natively implemented task.
type Definition struct {
	ID    string // lower-case task GUID
	Name  string // e.g. "CmdLine"
	Major int    // major version served
	// Inputs are the task.json inputs with their defaults. The runner starts
	// from these, overlays the step's inputs, expands macros, and roots every
	// FilePath input against the default working directory (worker.md §2.3).
	Inputs []Input
	// DisplayName, when set, computes the display name the official agent
	// shows when the step's own display name is empty or the task's name
	// (checkout: "Checkout repo@branch to s").
	DisplayName func(inputs map[string]string, job *Job) string
	// RawOutput: the step's output is never parsed for ##vso logging
	// commands (the official agent runs git with disableWorkerCommands, so a
	// commit subject cannot inject commands).
	RawOutput bool
	// Run executes the step. A nil error is success. An error fails the step;
	// its message is reported as an error issue, so it must say what happened
	// in the official wording where one exists ("Bash exited with code '1'.").
	// Cancellation arrives through ctx; Run must then stop every process it
	// started and return.
	Run func(ctx context.Context, ex *Exec) error
}

// Input is one task input definition.
type Input struct {
	Name     string
	Default  string
	FilePath bool // rooted against the default working directory
}

// Exec is everything a running step may use.
type Exec struct {
	StepID      string            // the step's timeline record id
	StepName    string            // reference name (output variable prefix)
	DisplayName string            // expanded display name
	Inputs      map[string]string // final values: defaults, step inputs, macros expanded, paths rooted
	// Env is the complete process environment for child processes, "K=V",
	// already built by the runner (worker.md §2.8): scrubbed of the agent's own
	// credentials, with job variables mapped, step env applied, TF_BUILD set.
	Env []string

	Dirs Dirs
	Job  *Job

	// Stdout and Stderr receive the child's output. The runner splits lines,
	// processes ##vso logging commands, masks secrets and streams. Writes must
	// not be held back: the runner does its own line buffering.
	Stdout io.Writer
	Stderr io.Writer

	Console Console
	Vars    Variables

	// KillGrace is how long a cancelled process gets after SIGINT before
	// SIGTERM, and again before SIGKILL is sent (official: 7.5 s, 2.5 s).
	KillGrace [2]time.Duration
	// Hard is closed when the step's processes must die at once, without
	// grace (a second signal to the agent, or the job's cancel timeout
	// expired). It may be nil.
	Hard <-chan struct{}

	// AddPostJob registers a post-job step ("Post-job: <name>") that the
	// runner runs after all main steps with condition always(), in reverse
	// order of registration. Checkout uses it to remove persisted credentials.
	AddPostJob func(displayName string, run func(ctx context.Context, ex *Exec) error)
}

// Dirs are the job's directories (worker.md §3.1), all absolute.
type Dirs struct {
	Work      string // Agent.WorkFolder (_work)
	Build     string // Agent.BuildDirectory (_work/N)
	Sources   string // Build.SourcesDirectory (_work/N/s)
	Temp      string // Agent.TempDirectory, private to this job
	Tools     string // Agent.ToolsDirectory
	Artifacts string // Build.ArtifactStagingDirectory
	Binaries  string // Build.BinariesDirectory
	// DefaultWorking is System.DefaultWorkingDirectory: where relative
	// filePath inputs and the default workingDirectory point.
	DefaultWorking string
}

// Job is the read-only part of the job message a step may need.
type Job struct {
	Repositories []wire.RepositoryResource
	Endpoints    []wire.ServiceEndpoint
	// CheckoutCount is the number of checkout steps in the job; more than one
	// switches to the multi-repository layout s/<repoName>.
	CheckoutCount int
	AgentVersion  string
}

// Endpoint finds an endpoint by id, or by name when id is empty or unmatched.
func (j *Job) Endpoint(ref *wire.ResourceReference) *wire.ServiceEndpoint {
	if ref == nil {
		return nil
	}
	for i, e := range j.Endpoints {
		if ref.ID != "" && strings.EqualFold(e.ID, ref.ID) && ref.ID != "00000000-0000-0000-0000-000000000000" {
			return &j.Endpoints[i]
		}
	}
	for i, e := range j.Endpoints {
		if ref.Name != "" && strings.EqualFold(e.Name, ref.Name) {
			return &j.Endpoints[i]
		}
	}
	return nil
}

// Repository finds a repository resource by alias.
func (j *Job) Repository(alias string) *wire.RepositoryResource {
	for i, r := range j.Repositories {
		if strings.EqualFold(r.Alias, alias) {
			return &j.Repositories[i]
		}
	}
	return nil
}

// Console is the step's log, as the official worker writes it. Lines written
// here are masked and streamed like process output but are never parsed for
// logging commands.
type Console interface {
	// Info writes a plain line.
	Info(line string)
	// Command writes "##[command]<line>" (a command the step runs).
	Command(line string)
	// Warning and Error write ##[warning]/##[error] lines and record issues on
	// the step. Issues do not change the step result by themselves.
	Warning(msg string)
	Error(msg string)
	// Debug writes "##[debug]<line>" when system.debug is true.
	Debug(line string)
	// AddSecret masks value from now on (checkout's basic auth header, say).
	AddSecret(value string)
}

// Variables gives a step the job's variables (names case-insensitive).
type Variables interface {
	Get(name string) (string, bool)
	// Set changes a job variable the way the worker itself does (checkout
	// updating build.sourcesDirectory for multi-repo layouts, for one).
	Set(name, value string)
}

// Registry holds the native tasks by id and major version.
type Registry struct {
	defs map[string]*Definition // key: id@major
}

// NewRegistry returns a registry with the given definitions.
func NewRegistry(defs ...*Definition) *Registry {
	r := &Registry{defs: map[string]*Definition{}}
	for _, d := range defs {
		r.defs[key(d.ID, d.Major)] = d
	}
	return r
}

func key(id string, major int) string {
	return strings.ToLower(id) + "@" + fmt.Sprint(major)
}

// UnsupportedTaskError says which task a job asked for that goagent does not
// run, and what it does run.
type UnsupportedTaskError struct {
	Ref       wire.TaskReference
	Supported []string
}

func (e *UnsupportedTaskError) Error() string {
	return fmt.Sprintf("task %s@%s (id %s) is not supported by goagent: it runs only %s natively and does not download or run Node/PowerShell task packages; replace the step with a script or use the official agent for this job",
		e.Ref.Name, e.Ref.Version, e.Ref.ID, strings.Join(e.Supported, ", "))
}

// Lookup finds the definition for a task reference (id and major version).
func (r *Registry) Lookup(ref wire.TaskReference) (*Definition, error) {
	major := 0
	if v, _, _ := strings.Cut(ref.Version, "."); v != "" {
		fmt.Sscan(v, &major)
	}
	if d, ok := r.defs[key(ref.ID, major)]; ok {
		return d, nil
	}
	return nil, &UnsupportedTaskError{Ref: ref, Supported: r.names()}
}

func (r *Registry) names() []string {
	var out []string
	for _, d := range r.defs {
		out = append(out, fmt.Sprintf("%s@%d", d.Name, d.Major))
	}
	sort.Strings(out)
	return out
}
