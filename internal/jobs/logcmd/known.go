package logcmd

import (
	"slices"
	"strings"
)

// HostType is the kind of pipeline a command area supports (the official
// HostTypes flags; a command of an area outside the job's host type fails
// with CommandNotSupportedError).
type HostType uint8

const (
	HostBuild HostType = 1 << iota
	HostDeployment
	HostPoolMaintenance
	HostRelease

	HostAll = HostBuild | HostDeployment | HostPoolMaintenance | HostRelease
)

// Spec describes a command the official agent implements.
type Spec struct {
	Area    string
	Event   string
	Aliases []string // other event names for the same command
	// Properties are the (lower-case) property names the official command
	// reads. Commands that forward unknown properties (artifact.associate,
	// artifact.upload: artifact properties; task.logissue: issue data)
	// accept others too.
	Properties []string
	// Restricted is true when the command is marked
	// [CommandRestriction(AllowedInRestrictedMode = true)], i.e. it still
	// runs in a step whose target has commands: restricted.
	Restricted bool
	Hosts      HostType
}

// specs is the official agent's command set (ExtensionManager's worker
// command extensions and the IWorkerCommand classes they install). The
// plugininternal area is left out: it only reaches the agent's own plugins,
// and a step using it gets "Cannot find command extension".
var specs = []Spec{
	// TaskCommandExtension.cs
	{Area: "task", Event: "logissue", Aliases: []string{"issue"}, Restricted: true, Hosts: HostAll,
		Properties: []string{"type", "sourcepath", "linenumber", "columnnumber", "code"}},
	{Area: "task", Event: "setprogress", Restricted: true, Hosts: HostAll, Properties: []string{"value"}},
	{Area: "task", Event: "logdetail", Restricted: true, Hosts: HostAll,
		Properties: []string{"id", "parentid", "type", "name", "order", "starttime", "finishtime", "progress", "state", "result"}},
	{Area: "task", Event: "complete", Restricted: true, Hosts: HostAll, Properties: []string{"result", "done"}},
	{Area: "task", Event: "setsecret", Restricted: true, Hosts: HostAll},
	{Area: "task", Event: "setvariable", Restricted: true, Hosts: HostAll,
		Properties: []string{"variable", "issecret", "isoutput", "isreadonly", "preservecase"}},
	{Area: "task", Event: "addattachment", Hosts: HostAll, Properties: []string{"type", "name"}},
	{Area: "task", Event: "debug", Restricted: true, Hosts: HostAll},
	{Area: "task", Event: "uploadsummary", Hosts: HostAll},
	{Area: "task", Event: "uploadfile", Hosts: HostAll},
	{Area: "task", Event: "settaskvariable", Restricted: true, Hosts: HostAll,
		Properties: []string{"variable", "issecret", "isreadonly", "preservecase"}},
	{Area: "task", Event: "setendpoint", Hosts: HostAll, Properties: []string{"id", "field", "key"}},
	{Area: "task", Event: "prependpath", Restricted: true, Hosts: HostAll},
	// Build/ArtifactCommandExtension.cs
	{Area: "artifact", Event: "associate", Hosts: HostBuild | HostRelease,
		Properties: []string{"artifactname", "artifacttype"}},
	{Area: "artifact", Event: "upload", Hosts: HostBuild | HostRelease,
		Properties: []string{"artifactname", "containerfolder", "artifacttype"}},
	// Build/BuildCommandExtension.cs (build.uploadsummary is deprecated but still served)
	{Area: "build", Event: "uploadlog", Hosts: HostAll},
	{Area: "build", Event: "uploadsummary", Hosts: HostAll},
	{Area: "build", Event: "updatebuildnumber", Hosts: HostAll},
	{Area: "build", Event: "addbuildtag", Hosts: HostAll},
	// CodeCoverage/CodeCoverageCommands.cs
	{Area: "codecoverage", Event: "publish", Hosts: HostBuild,
		Properties: []string{"codecoveragetool", "summaryfile", "reportdirectory", "additionalcodecoveragefiles"}},
	// TestResults/ResultsCommandExtension.cs, PublishToEvidenceStoreCommand.cs
	{Area: "results", Event: "publish", Hosts: HostAll,
		Properties: []string{"type", "mergeresults", "platform", "config", "runtitle", "publishrunattachments",
			"resultfiles", "testrunsystem", "failtaskonfailedtests", "listofautomatedtestpoints", "testplanid",
			"isdetecttestrunretry"}},
	{Area: "results", Event: "publishtoevidencestore", Hosts: HostAll,
		Properties: []string{"testrunner", "name", "testrunsummary", "description"}},
	// Telemetry/TelemetryCommandExtension.cs
	{Area: "telemetry", Event: "publish", Restricted: true, Hosts: HostAll, Properties: []string{"area", "feature"}},
	// Release/ReleaseCommandExtension.cs
	{Area: "release", Event: "updatereleasename", Hosts: HostRelease | HostDeployment},
}

// specIndex maps "area.event" (lower case, aliases included) to its Spec.
var specIndex = func() map[string]*Spec {
	idx := make(map[string]*Spec)
	for i := range specs {
		s := &specs[i]
		idx[s.Area+"."+s.Event] = s
		for _, a := range s.Aliases {
			idx[s.Area+"."+a] = s
		}
	}
	return idx
}()

// Lookup returns the official command for area and event, compared
// case-insensitively like the agent's command dictionaries; aliases resolve
// to their command.
func Lookup(area, event string) (Spec, bool) {
	s, ok := specIndex[strings.ToLower(area)+"."+strings.ToLower(event)]
	if !ok {
		return Spec{}, false
	}
	c := *s // the table stays immutable whatever the caller does
	c.Aliases = slices.Clone(c.Aliases)
	c.Properties = slices.Clone(c.Properties)
	return c, true
}

// Known reports whether the official agent implements area.event.
func Known(area, event string) bool {
	_, ok := Lookup(area, event)
	return ok
}

// KnownArea reports whether the official agent has a command extension for
// area. An unknown area draws a warning (UnknownAreaWarning), an unknown
// event of a known area an error (UnknownEventError).
func KnownArea(area string) bool {
	area = strings.ToLower(area)
	for i := range specs {
		if specs[i].Area == area {
			return true
		}
	}
	return false
}

// AllowedInRestricted reports whether area.event still runs in a step whose
// target has commands: restricted. Unknown commands are not allowed.
func AllowedInRestricted(area, event string) bool {
	s, ok := Lookup(area, event)
	return ok && s.Restricted
}
