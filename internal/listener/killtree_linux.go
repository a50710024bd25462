package listener

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// killChildren sends SIGKILL to every child of this process and to the
// process group each child leads (steps run in their own group). It is the
// last resort of a second signal and of an expired cancel timeout: the job
// runner's own escalation may still be inside a long grace period.
func killChildren() int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := os.Getpid()
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid …"; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(string(f[1])); err != nil || ppid != self {
			continue
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}
