package jobs

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/goagent-dev/goagent/internal/wire"
)

// Variable is one job variable (worker.md §4.1).
type Variable struct {
	Name         string // as first set (its case is kept for display)
	Value        string
	Secret       bool
	ReadOnly     bool
	PreserveCase bool
}

// Variables is the job's variable store: names are case-insensitive; once
// secret always secret, once read-only always read-only (Variables.cs).
// Safe for concurrent use: logging commands arrive on output goroutines.
type Variables struct {
	mu   sync.RWMutex
	vars map[string]*Variable // key: lower-case name
	// expanded values of message variables after recursive expansion
	// (RecalculateExpanded); lookups prefer them.
	expanded map[string]string
	onSecret func(string)
}

// NewVariables builds the store from the message's variables. onSecret is
// called with every secret value, now and later, so the masker learns it.
func NewVariables(msg map[string]wire.VariableValue, onSecret func(string)) *Variables {
	v := &Variables{vars: map[string]*Variable{}, onSecret: onSecret}
	// Deterministic order so that duplicates differing in case resolve the
	// same way every time.
	names := make([]string, 0, len(msg))
	for n := range msg {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		mv := msg[n]
		v.set(n, mv.Value, mv.IsSecret, mv.IsReadonly, false, true)
	}
	return v
}

// systemReadOnly are the variables a step may not overwrite
// (Constants.Variables.ReadOnlyVariables in the official agent).
var systemReadOnly = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Fields(`agent.acceptteeeula agent.builddirectory agent.cloudid agent.containerid
agent.containermapping agent.containernetwork agent.diagnostic agent.gituseschannel agent.homedirectory agent.id
agent.isselfhosted agent.jobname agent.jobstatus agent.machinename agent.name agent.os agent.osarchitecture
agent.osversion agent.proxybypasslist agent.proxypassword agent.proxyurl agent.proxyusername agent.readonlyvariables
agent.retaindefaultencoding agent.rootdirectory agent.runmode agent.serveromdirectory agent.services agent.cainfo
agent.clientcert agent.clientcertarchive agent.clientcertkey agent.clientcertpassword agent.skipcertvalidation
agent.tempdirectory agent.toolsdirectory agent.version agent.workfolder agent.workingdirectory
build.artifactstagingdirectory build.binariesdirectory build.clean build.definitionname build.gated.runci
build.gated.shelvesetname build.buildnumber build.repository.clean build.repository.git.submodulecheckout
build.repository.id build.repository.localpath build.repository.name build.repository.provider
build.repository.tfvc.workspace build.repository.uri build.sourcebranch build.sourcetfvcshelveset build.sourceversion
build.sourceversionmessage build.sourcesdirectory build.stagingdirectory build.syncsources build.useserverworkspaces
common.testresultsdirectory agent.clean.builddirectory agent.source.git.lfs agent.source.git.shallowfetchdepth
agent.source.skip pipeline.workspace agent.releasedirectory system.artifactsdirectory release.attemptnumber
release.disablerobocopy release.definitionid release.definitionname release.releasedescription
release.artifact.download.buffersize release.environmentname release.environmenturi release.releaseid
release.releasename release.artifact.download.parallellimit release.requestedforid release.releaseuri
release.releaseweburl release.requestedfor release.robocopymt release.skipartifactsdownload system.accesstoken
system.collectionid system.culture system.debug system.defaultworkingdirectory system.definitionid
system.definitionname system.enableaccesstoken system.hosttype system.jobattempt system.jobdisplayname system.jobid
system.jobname system.phaseattempt system.phasedisplayname system.phasename system.planid system.prefergitfrompath
system.pullrequest.targetbranch system.selfmanagegitcreds system.servertype system.sourceversionmessage
system.stageattempt system.stagedisplayname system.stagename system.teamfoundationserveruri system.teamproject
system.teamprojectid system.workfolder task.displayname`) {
		m[n] = true
	}
	return m
}()

// Get returns a variable's (expanded) value.
func (v *Variables) Get(name string) (string, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	k := strings.ToLower(name)
	if e, ok := v.expanded[k]; ok {
		return e, true
	}
	if x, ok := v.vars[k]; ok {
		return x.Value, true
	}
	return "", false
}

// Lookup returns a copy of a variable.
func (v *Variables) Lookup(name string) (Variable, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	x, ok := v.vars[strings.ToLower(name)]
	if !ok {
		return Variable{}, false
	}
	out := *x
	if e, ok := v.expanded[strings.ToLower(name)]; ok {
		out.Value = e
	}
	return out, true
}

// Set sets a variable as the worker does (no read-only check).
func (v *Variables) Set(name, value string) { v.set(name, value, false, false, false, false) }

// SetSecret sets a secret variable.
func (v *Variables) SetSecret(name, value string) { v.set(name, value, true, false, false, false) }

// SetReadOnly sets a variable that steps may not change.
func (v *Variables) SetReadOnly(name, value string, secret bool) {
	v.set(name, value, secret, true, false, false)
}

// IsReadOnly reports whether a step may not set name: an existing variable
// flagged read-only (by the message, the agent or a step), or one of the
// system variables (Variables.IsReadOnly: a name that is not a variable yet
// is never read-only).
func (v *Variables) IsReadOnly(name string) bool {
	k := strings.ToLower(name)
	v.mu.RLock()
	defer v.mu.RUnlock()
	x, ok := v.vars[k]
	return ok && (x.ReadOnly || systemReadOnly[k])
}

// SetFromStep is task.setvariable: the caller has checked read-only rules.
func (v *Variables) SetFromStep(name, value string, secret, readOnly, preserveCase bool) {
	v.set(name, value, secret, readOnly, preserveCase, false)
}

func (v *Variables) set(name, value string, secret, readOnly, preserveCase, fromMessage bool) {
	k := strings.ToLower(name)
	v.mu.Lock()
	x, ok := v.vars[k]
	if !ok {
		x = &Variable{Name: name}
		v.vars[k] = x
	}
	x.Value = value
	x.Secret = x.Secret || secret
	x.ReadOnly = x.ReadOnly || readOnly
	x.PreserveCase = x.PreserveCase || preserveCase
	if !fromMessage {
		delete(v.expanded, k)
	}
	isSecret := x.Secret
	v.mu.Unlock()
	if isSecret && v.onSecret != nil && strings.TrimSpace(value) != "" {
		v.onSecret(value)
	}
}

// All returns a snapshot of every variable with expanded values, sorted by name.
func (v *Variables) All() []Variable {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]Variable, 0, len(v.vars))
	for k, x := range v.vars {
		c := *x
		if e, ok := v.expanded[k]; ok {
			c.Value = e
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(out[i].Name) < strings.ToLower(out[j].Name) })
	return out
}

// maxExpansionDepth is the official limit for recursive expansion: a
// variable whose expansion needs this many nested levels is left unexpanded.
const maxExpansionDepth = 50

// Recalculate expands $(name) references among the variables recursively, as
// Variables.RecalculateExpanded does: every variable is expanded on its own
// from the raw values; a name that is not a variable is left as it is and the
// scan goes on one character after its "$("; a cycle or a nesting depth of 50
// leaves the variable unexpanded with a warning naming it; a value that took
// in a secret becomes secret and is masked. It returns the warnings, sorted.
func (v *Variables) Recalculate() []string {
	v.mu.Lock()
	raw := make(map[string]Variable, len(v.vars))
	for k, x := range v.vars {
		raw[k] = *x
	}
	v.mu.Unlock()

	type frame struct {
		name  string // lower case
		value string
		start int // where the next macro search starts
		open  int // the "$(" being expanded (valid while a child is pushed)
		close int // its ")"
	}
	expanded := map[string]string{}
	secretOf := map[string]bool{}
	var warnings, newSecrets []string
	for k, x := range raw {
		secret := x.Secret
		cur := frame{name: k, value: x.Value}
		var stack []frame
		failed := false
	outer:
		for {
			for cur.start < len(cur.value) {
				i := strings.Index(cur.value[cur.start:], "$(")
				if i < 0 {
					break
				}
				i += cur.start
				j := strings.IndexByte(cur.value[i+2:], ')')
				if j < 0 {
					break
				}
				j += i + 2
				nested := strings.ToLower(cur.value[i+2 : j])
				nv, ok := raw[nested]
				if nested == "" || !ok {
					cur.start = i + 1
					continue
				}
				if len(stack)+1 == maxExpansionDepth {
					warnings = append(warnings, fmt.Sprintf("Unable to expand variable '%s'. The max expansion depth (%d) was exceeded.", x.Name, maxExpansionDepth))
					failed = true
					break outer
				}
				cycle := nested == cur.name
				for _, f := range stack {
					cycle = cycle || f.name == nested
				}
				if cycle {
					warnings = append(warnings, fmt.Sprintf("Unable to expand variable '%s'. A cyclical reference was detected.", x.Name))
					failed = true
					break outer
				}
				secret = secret || nv.Secret
				cur.open, cur.close = i, j
				stack = append(stack, cur)
				cur = frame{name: nested, value: nv.Value}
			}
			if len(stack) == 0 {
				break
			}
			parent := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			parent.value = parent.value[:parent.open] + cur.value + parent.value[parent.close+1:]
			parent.start = parent.open + len(cur.value)
			cur = parent
		}
		if failed || cur.value == x.Value {
			continue
		}
		expanded[k] = cur.value
		secretOf[k] = secret
		if secret && cur.value != "" {
			newSecrets = append(newSecrets, cur.value)
		}
	}
	v.mu.Lock()
	v.expanded = expanded
	for k, sec := range secretOf {
		if x, ok := v.vars[k]; ok && sec {
			x.Secret = true
		}
	}
	v.mu.Unlock()
	for _, s := range newSecrets {
		if v.onSecret != nil && strings.TrimSpace(s) != "" {
			v.onSecret(s)
		}
	}
	sort.Strings(warnings)
	return warnings
}

// Expand replaces $(name) macros in s with variable values in a single,
// non-recursive, left-to-right pass (VarUtil.ExpandValues).
func (v *Variables) Expand(s string) string { return expandMacros(s, v.Get) }

// expandMacros is VarUtil.ExpandValues for one value: each "$(" up to the
// next ")" names a value; a known name is replaced and the scan resumes after
// the inserted text (no recursion); an unknown or empty name is left as it is
// and the scan resumes one character after its "$(".
func expandMacros(s string, lookup func(string) (string, bool)) string {
	start := 0
	for start < len(s) {
		i := strings.Index(s[start:], "$(")
		if i < 0 {
			break
		}
		i += start
		j := strings.IndexByte(s[i+2:], ')')
		if j < 0 {
			break
		}
		j += i + 2
		name := s[i+2 : j]
		val, ok := "", false
		if name != "" {
			val, ok = lookup(name)
		}
		if !ok {
			start = i + 1
			continue
		}
		s = s[:i] + val + s[j+1:]
		start = i + len(val)
	}
	return s
}

// EnvName maps a variable name to its environment variable name: upper
// case, '.' and ' ' become '_' (VarUtil.ConvertToEnvVariableFormat).
func EnvName(name string, preserveCase bool) string {
	r := strings.NewReplacer(".", "_", " ", "_")
	n := r.Replace(name)
	if preserveCase {
		return n
	}
	return strings.ToUpper(n)
}
