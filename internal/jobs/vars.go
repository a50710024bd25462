package jobs

import (
	"encoding/json"
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

// IsReadOnly reports whether a step may not set name: flagged read-only in
// the message or by the agent, or one of the system variables.
func (v *Variables) IsReadOnly(name string) bool {
	k := strings.ToLower(name)
	if systemReadOnly[k] {
		return true
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	x, ok := v.vars[k]
	return ok && x.ReadOnly
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

// maxExpansionDepth is the official limit for recursive expansion.
const maxExpansionDepth = 50

// Recalculate expands $(name) references among the variables recursively
// (Variables.RecalculateExpanded): unknown names stay as they are, cycles and
// depth > 50 leave the value unexpanded with a warning, and a value that took
// in a secret becomes secret. It returns the warnings.
func (v *Variables) Recalculate() []string {
	v.mu.Lock()
	raw := make(map[string]*Variable, len(v.vars))
	for k, x := range v.vars {
		raw[k] = x
	}
	v.mu.Unlock()

	expanded := map[string]string{}
	var warnings []string
	var newSecrets []string
	secretOf := map[string]bool{}
	var expand func(k string, stack []string) (string, bool, error)
	expand = func(k string, stack []string) (string, bool, error) {
		if e, ok := expanded[k]; ok {
			return e, secretOf[k], nil
		}
		x := raw[k]
		if len(stack) > maxExpansionDepth {
			return "", false, fmt.Errorf("Unable to expand variable '%s'. The max expansion depth (%d) was exceeded.", x.Name, maxExpansionDepth)
		}
		for _, s := range stack {
			if s == k {
				return "", false, fmt.Errorf("Unable to expand variable '%s'. A cyclical reference was detected.", x.Name)
			}
		}
		secret := x.Secret
		var b strings.Builder
		s := x.Value
		for {
			i := strings.Index(s, "$(")
			if i < 0 {
				b.WriteString(s)
				break
			}
			j := strings.IndexByte(s[i+2:], ')')
			if j < 0 {
				b.WriteString(s)
				break
			}
			name := strings.ToLower(s[i+2 : i+2+j])
			b.WriteString(s[:i])
			if _, ok := raw[name]; ok {
				val, sec, err := expand(name, append(stack, k))
				if err != nil {
					return "", false, err
				}
				b.WriteString(val)
				secret = secret || sec
			} else {
				b.WriteString(s[i : i+3+j])
			}
			s = s[i+3+j:]
		}
		expanded[k] = b.String()
		secretOf[k] = secret
		return expanded[k], secret, nil
	}
	for k, x := range raw {
		if _, _, err := expand(k, nil); err != nil {
			warnings = append(warnings, err.Error())
			expanded[k] = x.Value
			secretOf[k] = x.Secret
		}
	}
	v.mu.Lock()
	v.expanded = expanded
	for k, sec := range secretOf {
		if x, ok := v.vars[k]; ok && sec && !x.Secret {
			x.Secret = true
			newSecrets = append(newSecrets, expanded[k])
		} else if ok && sec && expanded[k] != x.Value {
			newSecrets = append(newSecrets, expanded[k])
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
// non-recursive, left-to-right pass (VarUtil.ExpandValues): unknown names
// are left as they are, and scanning resumes after an inserted value.
func (v *Variables) Expand(s string) string {
	if !strings.Contains(s, "$(") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "$(")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i+2:], ')')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		if val, ok := v.Get(s[i+2 : i+2+j]); ok {
			b.WriteString(val)
		} else {
			b.WriteString(s[i : i+3+j])
		}
		s = s[i+3+j:]
	}
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

// publicNamesJSON is VSTS_PUBLIC_VARIABLES: the names of non-secret variables.
func publicNamesJSON(vars []Variable) string {
	var names []string
	for _, x := range vars {
		if !x.Secret {
			names = append(names, x.Name)
		}
	}
	b, _ := json.Marshal(names)
	return string(b)
}
