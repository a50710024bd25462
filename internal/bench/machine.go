package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machine is what the figures depend on, recorded with them.
type machine struct {
	CPU          string
	Cores        int
	MemoryBytes  int64
	Kernel       string
	OS           string
	Go           string
	Git          string
	Bash         string
	Goagent      string
	BinaryPath   string
	Date         time.Time
	LoadStart    string
	LoadEnd      string
	LoadWaited   time.Duration
	Concurrently string // other heavy processes seen at the start
	Scratch      string // where agents, clones and logs were written
}

func (m machine) lines() [][2]string {
	load := m.LoadStart + " at the start, " + m.LoadEnd + " at the end (1, 5, 15 min)"
	if m.LoadWaited > 0 {
		load += fmt.Sprintf("; waited %s for the load to settle first", m.LoadWaited.Round(time.Second))
	}
	out := [][2]string{
		{"CPU", fmt.Sprintf("%s, %d logical cores", m.CPU, m.Cores)},
		{"Memory", fmt.Sprintf("%.1f GiB", float64(m.MemoryBytes)/(1<<30))},
		{"Kernel", m.Kernel},
		{"OS", m.OS},
		{"Go", m.Go},
		{"git", m.Git},
		{"bash", m.Bash},
		{"goagent", m.Goagent},
		{"Date", m.Date.UTC().Format("2006-01-02 15:04 MST")},
		{"Scratch directory", m.Scratch},
		{"Load average", load},
	}
	if m.Concurrently != "" {
		out = append(out, [2]string{"Other busy processes at the start", m.Concurrently})
	}
	return out
}

// describeMachine gathers the machine's facts; what cannot be read is said so.
func describeMachine(ctx context.Context, binary string) machine {
	m := machine{Cores: runtime.NumCPU(), Date: time.Now(), BinaryPath: binary}
	m.CPU = cpuModel()
	m.MemoryBytes = memTotal()
	m.Kernel = "Linux " + firstLine(readFile("/proc/sys/kernel/osrelease"))
	m.OS = osRelease()
	m.Go = firstLine(command(ctx, "go", "version"))
	if m.Go == "" {
		m.Go = runtime.Version() + " (the bench's own toolchain)"
	}
	m.Git = firstLine(command(ctx, "git", "--version"))
	m.Bash = firstLine(command(ctx, "bash", "--version"))
	m.Goagent = firstLine(command(ctx, binary, "version"))
	m.LoadStart = loadAverage()
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() int64 {
	for _, line := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

func osRelease() string {
	for _, line := range strings.Split(readFile("/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS + "/" + runtime.GOARCH
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// load1 is the one-minute load average.
func load1() float64 {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// busyProcesses names processes using noticeable CPU right now (other
// helpers' test runs on a shared machine), from two samples of /proc.
func busyProcesses() string {
	before := cpuTimes()
	time.Sleep(time.Second)
	after := cpuTimes()
	var busy []string
	self := os.Getpid()
	for pid, t := range after {
		if pid == self {
			continue
		}
		if d := t.ticks - before[pid].ticks; d >= 10 { // ≥ 10% of a core
			busy = append(busy, fmt.Sprintf("%s (%d%%)", t.comm, d))
		}
	}
	return strings.Join(busy, ", ")
}

type cpuTime struct {
	comm  string
	ticks int64
}

func cpuTimes() map[int]cpuTime {
	out := map[int]cpuTime{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, ticks, err := procCPU(pid); err == nil {
			out[pid] = cpuTime{comm: comm, ticks: ticks}
		}
	}
	return out
}

// procCPU reads a process's name and user+system CPU time in clock ticks
// (USER_HZ, 1/100 s) from /proc/PID/stat.
func procCPU(pid int) (string, int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	// comm is in parentheses and may hold spaces; fields follow the last ')'.
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return "", 0, fmt.Errorf("read CPU time of process %d: unexpected /proc stat", pid)
	}
	f := strings.Fields(string(b[j+1:]))
	if len(f) < 13 {
		return "", 0, fmt.Errorf("read CPU time of process %d: unexpected /proc stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return string(b[i+1 : j]), utime + stime, nil
}

func readFile(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return string(b)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

func command(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// describeScratch names the scratch directory's file system type, from
// /proc/mounts (the longest mount point that contains it).
func describeScratch(dir string) string {
	best, fstype := "", "unknown file system"
	for _, line := range strings.Split(readFile("/proc/mounts"), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, fstype = mp, f[2]
		}
	}
	return fmt.Sprintf("%s (%s)", dir, fstype)
}
