package webui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// protocolVersion is sent in hello; bump it when a message changes meaning.
const protocolVersion = 1

// Server → client messages (see the package documentation).
type (
	helloMsg struct {
		Type     string `json:"type"`
		Protocol int    `json:"protocol"`
		Server   string `json:"server"`
	}
	runsMsg struct {
		Type string `json:"type"`
		Runs []Run  `json:"runs"`
	}
	runMsg struct {
		Type string `json:"type"`
		Run  Run    `json:"run"`
	}
	snapshotMsg struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Run  *Run   `json:"run"`
		Jobs []Job  `json:"jobs"`
	}
	jobMsg struct {
		Type string `json:"type"`
		Run  string `json:"run"`
		Job  Job    `json:"job"`
	}
	recordMsg struct {
		Type   string `json:"type"`
		Run    string `json:"run"`
		Job    string `json:"job"`
		Record Record `json:"record"`
	}
	linesMsg struct {
		Type  string   `json:"type"`
		Run   string   `json:"run"`
		Step  string   `json:"step"`
		Gen   string   `json:"gen"`
		First int      `json:"first"`
		Lines []string `json:"lines"`
		Reset bool     `json:"reset,omitempty"`
	}
	resyncMsg struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}
	errorMsg struct {
		Type  string `json:"type"`
		Error string `json:"error"`
	}
)

// watch is the one client → server frame.
type watch struct {
	Type  string `json:"type"`
	Run   string `json:"run,omitempty"`
	Step  string `json:"step,omitempty"`
	After int    `json:"after,omitempty"`
	Gen   string `json:"gen,omitempty"`
}

// maxGen bounds the gen a client may echo; real ones are "<16 hex>.<n>".
const maxGen = 64

// decodeFrame parses and validates a client frame. Ids come back in the
// lower-case form the emulator uses. Errors say what is wrong in words a
// client author can act on; they never echo the frame.
func decodeFrame(b []byte) (watch, error) {
	var w watch
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return watch{}, fmt.Errorf("frame is not a protocol message (a JSON object with known fields): %s", jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return watch{}, errors.New("frame holds more than one JSON value")
	}
	if w.Type != "watch" {
		return watch{}, fmt.Errorf("unknown message type %q: the only client message is \"watch\"", clip(w.Type))
	}
	var err error
	if w.Run, err = guid("run", w.Run); err != nil {
		return watch{}, err
	}
	if w.Step, err = guid("step", w.Step); err != nil {
		return watch{}, err
	}
	if w.Step != "" && w.Run == "" {
		return watch{}, errors.New("watch names a step but no run")
	}
	if w.After < 0 {
		return watch{}, fmt.Errorf("after is %d: it counts console lines the client has, so it is 0 or more", w.After)
	}
	if len(w.Gen) > maxGen {
		return watch{}, fmt.Errorf("gen is %d bytes long: echo the gen of the last lines message (at most %d bytes)", len(w.Gen), maxGen)
	}
	return w, nil
}

func guid(field, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	u, err := uuid.Parse(v)
	if err != nil || strings.ContainsAny(v, "{}:") || len(v) != 36 {
		return "", fmt.Errorf("%s %q is not an id: runs are named by plan id and steps by timeline record id (GUIDs)", field, clip(v))
	}
	return u.String(), nil
}

// jsonProblem describes a decoding error without quoting the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "invalid JSON at offset " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be a %s, not a %s", te.Field, te.Type.Kind(), te.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the frame is empty or cut short"
	}
	if s := err.Error(); strings.HasPrefix(s, "json: unknown field ") {
		return "unknown field " + clip(strings.TrimPrefix(s, "json: unknown field "))
	}
	return "invalid JSON"
}

// clip keeps error messages short whatever a client sends.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "…"
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own message types reach here; they always encode.
		panic("webui: encode message: " + err.Error())
	}
	return b
}
