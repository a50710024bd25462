package jobs

import (
	"context"
	"sync"
)

// asyncCommand is a logging command whose service call runs while the step
// goes on (AsyncCommandContext): started when the command is processed,
// awaited when the step ends, before "Finishing: …".
type asyncCommand struct {
	name string
	done chan struct{}
	out  []string // output lines, written when the command is awaited
	err  error
}

// asyncCommands are a step's async commands. They share one context, as the
// official ones share the step's cancellation token.
type asyncCommands struct {
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelCauseFunc
	list   []*asyncCommand
}

// startAsync runs work in the background as the async command name.
func (s *stepRun) startAsync(name string, work func(ctx context.Context) ([]string, error)) {
	a := &s.async
	a.mu.Lock()
	if a.ctx == nil {
		a.ctx, a.cancel = context.WithCancelCause(context.Background())
	}
	c := &asyncCommand{name: name, done: make(chan struct{})}
	a.list = append(a.list, c)
	ctx := a.ctx
	a.mu.Unlock()
	go func() {
		defer close(c.done)
		c.out, c.err = work(ctx)
	}()
}

// awaitAsync waits for the step's async commands in the order they started
// (StepsRunner.RunStepAsync): each between "Async Command Start/End"
// sections, its output in between; a failed command is an error on the step
// and fails it, a cancelled one cancels it. It returns the step's result
// merged with theirs.
func (s *stepRun) awaitAsync(result string) string {
	a := &s.async
	a.mu.Lock()
	cmds, ctx, cancel := a.list, a.ctx, a.cancel
	a.list, a.ctx, a.cancel = nil, nil, nil
	a.mu.Unlock()
	if len(cmds) == 0 {
		return result
	}
	defer cancel(nil)
	jr := s.jr
	if result == ResultCanceled {
		// The official commands run on the step's token, cancelled with it.
		cancel(context.Canceled)
	}
	// While the step waits, a job cancellation or agent shutdown reaches the
	// commands through the step's cancel function (onCancel).
	shutdown, canceled, release := s.becomeCurrent(cancel)
	defer release()
	switch {
	case shutdown:
		cancel(ErrAgentShutdown)
	case canceled && result != ResultCanceled:
		// The job was cancelled after the step's process ended and before
		// onCancel could see this step: decide as onCancel would.
		if ok, _, err := s.evalCondition(); err != nil || !ok {
			cancel(context.Canceled)
		}
	}
	con := s.console()
	for _, c := range cmds {
		con.Info("##[section]Async Command Start: " + c.name)
		select {
		case <-c.done:
		case <-jr.hard:
			cancel(ErrAgentShutdown)
			<-c.done
		}
		for _, l := range c.out {
			con.Info(l)
		}
		con.Info("##[section]Async Command End: " + c.name)
		if c.err == nil {
			continue
		}
		con.Error(c.err.Error())
		if ctx.Err() != nil {
			result = MergeResults(result, ResultCanceled)
		} else {
			result = MergeResults(result, ResultFailed)
		}
	}
	return result
}

// becomeCurrent makes s the running step onCancel reaches, through cancel,
// until release is called. It reports whether the agent is already shutting
// down and whether the job is already cancelled.
func (s *stepRun) becomeCurrent(cancel context.CancelCauseFunc) (shutdown, canceled bool, release func()) {
	jr := s.jr
	s.mu.Lock()
	s.cancelFn = cancel
	s.mu.Unlock()
	jr.mu.Lock()
	jr.current = s
	shutdown, canceled = jr.shutdown, jr.canceled
	jr.mu.Unlock()
	return shutdown, canceled, func() {
		jr.mu.Lock()
		jr.current = nil
		jr.mu.Unlock()
		s.mu.Lock()
		s.cancelFn = nil
		s.mu.Unlock()
	}
}
