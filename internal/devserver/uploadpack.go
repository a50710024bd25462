package devserver

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// The native upload-pack serves git's protocol v0 over stateless smart HTTP
// (gitprotocol-pack, gitprotocol-http) from a repository read with go-git, so
// that the emulator serves repositories in images without git. It follows
// git's upload-pack.c for what a client can observe: the capabilities it
// advertises, the shallow/unshallow section, the ACK/NAK rules of the three
// multi_ack modes, and which objects go into the pack. It never claims
// "ready" (git only does to cut negotiation short), never sends thin packs,
// and sends objects whole (no deltas): loopback bandwidth is cheap, CPU on a
// small build machine is not.

// infiniteDepth is what `git fetch --unshallow` asks for (INFINITE_DEPTH).
const infiniteDepth = 0x7fffffff

// nativeCapabilities is the v0 capability list, in git's order; symref and
// agent are appended per advertisement.
var nativeCapabilities = []string{
	"multi_ack", "thin-pack", "side-band", "side-band-64k", "ofs-delta", "shallow",
	"no-progress", "include-tag", "multi_ack_detailed",
	"allow-tip-sha1-in-want", "allow-reachable-sha1-in-want",
}

const nativeAgent = "agent=goagent-devserver"

// nativeRepo is a repository served by the native upload-pack. The storage
// is opened per request, so commits made between fetches are seen.
type nativeRepo struct {
	gitDir string
}

func openNativeRepo(gitDir string) (*nativeRepo, error) {
	n := &nativeRepo{gitDir: gitDir}
	st := n.storage()
	defer st.Close()
	if _, err := st.Reference(plumbing.HEAD); err != nil && !errors.Is(err, plumbing.ErrReferenceNotFound) {
		return nil, fmt.Errorf("open %s with go-git: %w", gitDir, err)
	}
	return n, nil
}

func (n *nativeRepo) storage() *filesystem.Storage {
	return filesystem.NewStorageWithOptions(osfs.New(n.gitDir), cache.NewObjectLRUDefault(), filesystem.Options{AlternatesFS: osfs.New("/")})
}

// advertisedRef is one line of the reference advertisement.
type advertisedRef struct {
	name   string
	hash   plumbing.Hash
	peeled plumbing.Hash // annotated tags: the object the tag chain ends at
}

// refs lists HEAD (when it resolves) and every ref under refs/, sorted.
func (n *nativeRepo) refs(st *filesystem.Storage) (head *advertisedRef, headTarget string, refs []advertisedRef, err error) {
	iter, err := st.IterReferences()
	if err != nil {
		return nil, "", nil, fmt.Errorf("list references: %w", err)
	}
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if r.Type() != plumbing.HashReference || !strings.HasPrefix(r.Name().String(), "refs/") {
			return nil
		}
		ar := advertisedRef{name: r.Name().String(), hash: r.Hash()}
		if strings.HasPrefix(ar.name, "refs/tags/") {
			ar.peeled = peel(st, r.Hash())
		}
		refs = append(refs, ar)
		return nil
	})
	if err != nil {
		return nil, "", nil, fmt.Errorf("list references: %w", err)
	}
	sort.Slice(refs, func(a, b int) bool { return refs[a].name < refs[b].name })
	if h, err := st.Reference(plumbing.HEAD); err == nil {
		target := h
		for i := 0; i < 10 && target.Type() == plumbing.SymbolicReference; i++ {
			headTarget = target.Target().String()
			if target, err = st.Reference(target.Target()); err != nil {
				break
			}
		}
		if err == nil && target.Type() == plumbing.HashReference {
			head = &advertisedRef{name: "HEAD", hash: target.Hash()}
		}
	}
	return head, headTarget, refs, nil
}

// peel follows a chain of tag objects; it returns the zero hash when h is
// not a tag object.
func peel(st storer.EncodedObjectStorer, h plumbing.Hash) plumbing.Hash {
	var out plumbing.Hash
	for i := 0; i < 16; i++ {
		t, err := object.GetTag(st, h)
		if err != nil {
			return out
		}
		h, out = t.Target, t.Target
	}
	return out
}

// serveAdvertisement answers GET info/refs?service=git-upload-pack.
func (n *nativeRepo) serveAdvertisement(w http.ResponseWriter) {
	st := n.storage()
	defer st.Close()
	head, headTarget, refs, err := n.refs(st)
	if err != nil {
		gitError(w, http.StatusInternalServerError, "read repository: "+err.Error())
		return
	}
	var b bytes.Buffer
	e := pktline.NewEncoder(&b)
	e.EncodeString("# service=git-upload-pack\n")
	e.Flush()
	caps := append([]string(nil), nativeCapabilities...)
	if headTarget != "" && head != nil {
		caps = append(caps, "symref=HEAD:"+headTarget)
	}
	caps = append(caps, nativeAgent)
	first := true
	line := func(h plumbing.Hash, name string) {
		if first {
			e.Encodef("%s %s\x00%s\n", h, name, strings.Join(caps, " "))
			first = false
			return
		}
		e.Encodef("%s %s\n", h, name)
	}
	if head != nil {
		line(head.hash, "HEAD")
	}
	for _, r := range refs {
		line(r.hash, r.name)
		if !r.peeled.IsZero() {
			line(r.peeled, r.name+"^{}")
		}
	}
	if first {
		// An empty repository still advertises its capabilities.
		line(plumbing.ZeroHash, "capabilities^{}")
	}
	e.Flush()
	w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
}

// uploadRequest is a parsed stateless upload-pack request.
type uploadRequest struct {
	wants    []plumbing.Hash
	caps     map[string]bool
	shallows []plumbing.Hash // the client's shallow commits
	depth    int
	haves    []plumbing.Hash
	flushes  int  // negotiation rounds ended by a flush
	done     bool // the client said done
	// rounds holds the have lines of each round (the part before a flush
	// or done), for the ACK/NAK answers.
	rounds [][]plumbing.Hash
}

// protocolError is a request the client should not have sent; it is
// answered with an ERR packet, as upload-pack dies with one.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

func protoErr(format string, args ...any) error {
	return &protocolError{msg: fmt.Sprintf(format, args...)}
}

func parseHash(s string) (plumbing.Hash, bool) {
	if len(s) != 40 {
		return plumbing.ZeroHash, false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return plumbing.ZeroHash, false
		}
	}
	return plumbing.NewHash(s), true
}

// parseUploadRequest reads want/shallow/deepen lines up to the first
// flush, then rounds of have lines each ended by a flush, up to done.
func parseUploadRequest(body io.Reader) (*uploadRequest, error) {
	req := &uploadRequest{caps: map[string]bool{}}
	sc := pktline.NewScanner(body)
	// Phase 1: the needs.
	for {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return nil, protoErr("read request: %v", err)
			}
			return nil, protoErr("the request ended before the flush after the want lines")
		}
		line := strings.TrimSuffix(string(sc.Bytes()), "\n")
		if line == "" {
			break
		}
		switch verb, arg, _ := strings.Cut(line, " "); verb {
		case "want":
			hex, features, _ := strings.Cut(arg, " ")
			h, ok := parseHash(hex)
			if !ok {
				return nil, protoErr("git upload-pack: protocol error, expected to get object ID, not '%s'", line)
			}
			if len(req.wants) == 0 {
				for _, f := range strings.Fields(features) {
					name, _, _ := strings.Cut(f, "=")
					req.caps[name] = true
				}
			}
			req.wants = append(req.wants, h)
		case "shallow":
			h, ok := parseHash(arg)
			if !ok {
				return nil, protoErr("invalid shallow line: %s", line)
			}
			req.shallows = append(req.shallows, h)
		case "deepen":
			d, err := strconv.ParseInt(arg, 0, 32)
			if err != nil || d <= 0 {
				return nil, protoErr("Invalid deepen: %s", line)
			}
			req.depth = int(d)
		case "deepen-since", "deepen-not":
			return nil, protoErr("git upload-pack: %s is not supported by this server (it did not advertise it)", verb)
		case "filter":
			return nil, protoErr("git upload-pack: filtering capability not negotiated")
		default:
			return nil, protoErr("git upload-pack: protocol error, expected to get object ID, not '%s'", line)
		}
	}
	if len(req.wants) == 0 {
		return req, nil // nothing wanted: upload-pack ends quietly
	}
	// Phase 2: the haves.
	var round []plumbing.Hash
	for sc.Scan() {
		line := strings.TrimSuffix(string(sc.Bytes()), "\n")
		switch {
		case line == "":
			req.rounds = append(req.rounds, round)
			round = nil
			req.flushes++
		case line == "done":
			req.rounds = append(req.rounds, round)
			req.done = true
			return req, nil
		case strings.HasPrefix(line, "have "):
			h, ok := parseHash(strings.TrimPrefix(line, "have "))
			if !ok {
				return nil, protoErr("git upload-pack: expected SHA1 object, got '%s'", line)
			}
			round = append(round, h)
			req.haves = append(req.haves, h)
		default:
			return nil, protoErr("git upload-pack: expected SHA1 list, got '%s'", line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, protoErr("read request: %v", err)
	}
	if len(round) > 0 {
		req.rounds = append(req.rounds, round)
	}
	return req, nil
}

// serveUploadPack answers POST git-upload-pack.
func (n *nativeRepo) serveUploadPack(ctx context.Context, w http.ResponseWriter, encoding string, body []byte) {
	var in io.Reader = bytes.NewReader(body)
	switch strings.ToLower(encoding) {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(in)
		if err != nil {
			gitError(w, http.StatusBadRequest, "the request body is not valid gzip: "+err.Error())
			return
		}
		defer zr.Close()
		in = zr
	default:
		gitError(w, http.StatusUnsupportedMediaType, "unsupported Content-Encoding "+encoding)
		return
	}
	w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
	w.Header().Set("Cache-Control", "no-cache")
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	e := pktline.NewEncoder(bw)
	req, err := parseUploadRequest(in)
	if err == nil {
		err = n.uploadPack(ctx, req, bw)
	}
	var pe *protocolError
	if errors.As(err, &pe) {
		e.EncodeString("ERR " + pe.msg + "\n")
	} else if err != nil {
		// Headers are out: all the client can get is an error packet.
		e.EncodeString("ERR upload-pack: " + err.Error() + "\n")
	}
}

// uploadPack writes the response to one request: the shallow section, the
// negotiation answers and, after done, the pack.
func (n *nativeRepo) uploadPack(ctx context.Context, req *uploadRequest, w *bufio.Writer) error {
	if len(req.wants) == 0 {
		return nil
	}
	st := n.storage()
	defer st.Close()
	e := pktline.NewEncoder(w)
	for c := range req.caps {
		switch c {
		case "multi_ack", "multi_ack_detailed", "thin-pack", "side-band", "side-band-64k", "ofs-delta",
			"shallow", "no-progress", "include-tag", "agent", "session-id", "allow-tip-sha1-in-want", "allow-reachable-sha1-in-want":
		default:
			return protoErr("git upload-pack: the client asked for capability %q, which this server did not advertise", c)
		}
	}
	if err := n.checkWants(st, req.wants); err != nil {
		return err
	}
	g, err := newGraph(st, n.gitDir)
	if err != nil {
		return err
	}
	for _, s := range req.shallows {
		if c, err := g.commit(s); err == nil && c != nil {
			g.clientShallow[s] = true
		}
	}

	wants := append([]plumbing.Hash(nil), req.wants...)
	var extraHaves []plumbing.Hash
	if req.depth > 0 {
		shallow, unshallow, err := g.deepen(wants, req.shallows, req.depth)
		if err != nil {
			return err
		}
		for _, h := range shallow {
			e.Encodef("shallow %s\n", h)
		}
		for _, h := range unshallow {
			e.Encodef("unshallow %s\n", h)
			c, _ := g.commit(h)
			wants = append(wants, c.ParentHashes...)
			extraHaves = append(extraHaves, h)
		}
		e.Flush()
	}

	// Negotiation, as get_common_commits answers it.
	mode := 0
	switch {
	case req.caps["multi_ack_detailed"]:
		mode = 2
	case req.caps["multi_ack"]:
		mode = 1
	}
	var common []plumbing.Hash
	seen := map[plumbing.Hash]bool{}
	var last plumbing.Hash
	for i, round := range req.rounds {
		for _, h := range round {
			if !g.has(h) || seen[h] {
				continue
			}
			seen[h] = true
			common = append(common, h)
			last = h
			switch mode {
			case 2:
				e.Encodef("ACK %s common\n", h)
			case 1:
				e.Encodef("ACK %s continue\n", h)
			default:
				if len(common) == 1 {
					e.Encodef("ACK %s\n", h)
				}
			}
		}
		finalRound := i == len(req.rounds)-1 && req.done
		if finalRound {
			break
		}
		// A flush ends a round: NAK, and a stateless server stops here.
		if len(common) == 0 || mode > 0 {
			e.EncodeString("NAK\n")
		}
		return nil
	}
	if !req.done {
		return nil
	}
	if len(common) > 0 {
		if mode > 0 {
			e.Encodef("ACK %s\n", last)
		}
	} else {
		e.EncodeString("NAK\n")
	}

	objs, err := g.objectsToSend(wants, append(common, extraHaves...), req.caps["include-tag"])
	if err != nil {
		return err
	}
	return writePack(ctx, st, w, objs, req.caps)
}

// checkWants applies allow-reachable-sha1-in-want: an object may be asked
// for when a ref points at it or it is reachable from one.
func (n *nativeRepo) checkWants(st *filesystem.Storage, wants []plumbing.Hash) error {
	head, _, refs, err := n.refs(st)
	if err != nil {
		return err
	}
	tips := map[plumbing.Hash]bool{}
	var starts []plumbing.Hash
	add := func(h plumbing.Hash) {
		if !h.IsZero() && !tips[h] {
			tips[h] = true
			starts = append(starts, h)
		}
	}
	if head != nil {
		add(head.hash)
	}
	for _, r := range refs {
		add(r.hash)
		add(r.peeled)
	}
	var pending []plumbing.Hash
	for _, w := range wants {
		if _, err := st.EncodedObject(plumbing.AnyObject, w); err != nil {
			return protoErr("upload-pack: not our ref %s", w)
		}
		if !tips[w] {
			pending = append(pending, w)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	// Rare (a fetch by commit id that no ref points at): walk the history
	// and trees of every ref to find them.
	g, err := newGraph(st, n.gitDir)
	if err != nil {
		return err
	}
	reach, err := g.reachable(starts, nil)
	if err != nil {
		return err
	}
	for _, w := range pending {
		if !reach[w] {
			return protoErr("upload-pack: not our ref %s", w)
		}
	}
	return nil
}

// graph walks a repository's objects, honouring the repository's own
// shallow boundary (a served clone may itself be shallow) and the client's.
type graph struct {
	st            *filesystem.Storage
	serverShallow map[plumbing.Hash]bool
	clientShallow map[plumbing.Hash]bool
	commits       map[plumbing.Hash]*object.Commit
}

func newGraph(st *filesystem.Storage, gitDir string) (*graph, error) {
	g := &graph{st: st, serverShallow: map[plumbing.Hash]bool{}, clientShallow: map[plumbing.Hash]bool{}, commits: map[plumbing.Hash]*object.Commit{}}
	b, err := os.ReadFile(filepath.Join(gitDir, "shallow"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the repository's shallow file: %w", err)
	}
	for _, l := range strings.Fields(string(b)) {
		if h, ok := parseHash(l); ok {
			g.serverShallow[h] = true
		}
	}
	return g, nil
}

func (g *graph) has(h plumbing.Hash) bool {
	return g.st.HasEncodedObject(h) == nil
}

// commit returns the commit h (nil, nil when h is another kind of object).
func (g *graph) commit(h plumbing.Hash) (*object.Commit, error) {
	if c, ok := g.commits[h]; ok {
		return c, nil
	}
	o, err := g.st.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return nil, fmt.Errorf("read object %s: %w", h, err)
	}
	if o.Type() != plumbing.CommitObject {
		return nil, nil
	}
	c, err := object.DecodeCommit(g.st, o)
	if err != nil {
		return nil, fmt.Errorf("decode commit %s: %w", h, err)
	}
	g.commits[h] = c
	return c, nil
}

// parents are a commit's parents as far as the walk may go.
func (g *graph) parents(c *object.Commit, boundary map[plumbing.Hash]bool) []plumbing.Hash {
	if g.serverShallow[c.Hash] || boundary[c.Hash] {
		return nil
	}
	return c.ParentHashes
}

// deref follows tags to the object they end at.
func (g *graph) deref(h plumbing.Hash) plumbing.Hash {
	if p := peel(g.st, h); !p.IsZero() {
		return p
	}
	return h
}

// deepen computes the shallow section of a depth request as git's
// get_shallow_commits and send_unshallow do: a commit at distance depth
// from a want becomes shallow (unless the client already has it so, or a
// shorter path reaches past it); the client's shallow commits that now have
// their parents sent are unshallowed.
func (g *graph) deepen(wants, clientShallows []plumbing.Hash, depth int) (shallow, unshallow []plumbing.Hash, err error) {
	notShallow := map[plumbing.Hash]bool{}
	if depth == infiniteDepth && len(g.serverShallow) == 0 {
		for _, s := range clientShallows {
			if g.clientShallow[s] {
				notShallow[s] = true
			}
		}
	} else {
		dist := map[plumbing.Hash]int{}
		var queue []plumbing.Hash
		for _, w := range wants {
			h := g.deref(w)
			c, err := g.commit(h)
			if err != nil {
				return nil, nil, err
			}
			if c == nil {
				continue
			}
			if _, ok := dist[h]; !ok {
				dist[h] = 1
				queue = append(queue, h)
			}
		}
		var result []plumbing.Hash
		for len(queue) > 0 {
			h := queue[0]
			queue = queue[1:]
			c, err := g.commit(h)
			if err != nil {
				return nil, nil, err
			}
			d := dist[h]
			if (depth != infiniteDepth && d >= depth) || g.serverShallow[h] {
				result = append(result, h)
				continue
			}
			notShallow[h] = true
			for _, p := range c.ParentHashes {
				if _, ok := dist[p]; !ok {
					dist[p] = d + 1
					queue = append(queue, p)
				}
			}
		}
		for _, h := range result {
			if !g.clientShallow[h] && !notShallow[h] {
				shallow = append(shallow, h)
			}
		}
	}
	for _, s := range clientShallows {
		if g.clientShallow[s] && notShallow[s] {
			unshallow = append(unshallow, s)
		}
	}
	// The pack walk stops at every commit the client will consider shallow.
	for _, h := range shallow {
		g.clientShallow[h] = true
	}
	return shallow, unshallow, nil
}

// reachable collects every object reachable from starts (commits, their
// trees and blobs, tags and what they point at), stopping at the shallow
// boundaries and at objects in stop.
func (g *graph) reachable(starts []plumbing.Hash, stop map[plumbing.Hash]bool) (map[plumbing.Hash]bool, error) {
	out := map[plumbing.Hash]bool{}
	var order []plumbing.Hash
	_, err := g.collect(starts, stop, out, &order)
	return out, err
}

// collect adds to out (and order) what starts reach outside stop.
func (g *graph) collect(starts []plumbing.Hash, stop, out map[plumbing.Hash]bool, order *[]plumbing.Hash) (int, error) {
	n0 := len(*order)
	add := func(h plumbing.Hash) bool {
		if stop[h] || out[h] {
			return false
		}
		out[h] = true
		*order = append(*order, h)
		return true
	}
	var walkTree func(h plumbing.Hash) error
	walkTree = func(h plumbing.Hash) error {
		if !add(h) {
			return nil
		}
		t, err := object.GetTree(g.st, h)
		if err != nil {
			return fmt.Errorf("read tree %s: %w", h, err)
		}
		for _, en := range t.Entries {
			switch en.Mode {
			case filemode.Submodule:
				// A gitlink names a commit of another repository.
			case filemode.Dir:
				if err := walkTree(en.Hash); err != nil {
					return err
				}
			default:
				add(en.Hash)
			}
		}
		return nil
	}
	stack := append([]plumbing.Hash(nil), starts...)
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if stop[h] || out[h] {
			continue
		}
		o, err := g.st.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return 0, fmt.Errorf("read object %s: %w", h, err)
		}
		switch o.Type() {
		case plumbing.TagObject:
			add(h)
			t, err := object.DecodeTag(g.st, o)
			if err != nil {
				return 0, fmt.Errorf("decode tag %s: %w", h, err)
			}
			stack = append(stack, t.Target)
		case plumbing.CommitObject:
			c, err := g.commit(h)
			if err != nil {
				return 0, err
			}
			add(h)
			if err := walkTree(c.TreeHash); err != nil {
				return 0, err
			}
			stack = append(stack, g.parents(c, g.clientShallow)...)
		case plumbing.TreeObject:
			if err := walkTree(h); err != nil {
				return 0, err
			}
		default:
			add(h)
		}
	}
	return len(*order) - n0, nil
}

// objectsToSend is `pack-objects --revs` for wants --not haves, with
// --include-tag: annotated tags pointing into the pack come along.
func (g *graph) objectsToSend(wants, haves []plumbing.Hash, includeTag bool) ([]plumbing.Hash, error) {
	var stop map[plumbing.Hash]bool
	if len(haves) > 0 {
		var err error
		if stop, err = g.reachable(haves, nil); err != nil {
			return nil, err
		}
	}
	out := map[plumbing.Hash]bool{}
	var order []plumbing.Hash
	if _, err := g.collect(wants, stop, out, &order); err != nil {
		return nil, err
	}
	if includeTag {
		iter, err := g.st.IterReferences()
		if err != nil {
			return nil, fmt.Errorf("list references: %w", err)
		}
		err = iter.ForEach(func(r *plumbing.Reference) error {
			if r.Type() != plumbing.HashReference || !r.Name().IsTag() || out[r.Hash()] || stop[r.Hash()] {
				return nil
			}
			if p := peel(g.st, r.Hash()); !p.IsZero() && out[p] {
				// The tag chain down to what is already packed.
				for h := r.Hash(); !out[h]; {
					t, err := object.GetTag(g.st, h)
					if err != nil {
						break
					}
					out[h] = true
					order = append(order, h)
					h = t.Target
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return order, nil
}

// writePack streams the pack, multiplexed on side-band 1 when asked for.
func writePack(ctx context.Context, st *filesystem.Storage, w *bufio.Writer, objs []plumbing.Hash, caps map[string]bool) error {
	var dst io.Writer = w
	var mux *sideband.Muxer
	switch {
	case caps["side-band-64k"]:
		mux = sideband.NewMuxer(sideband.Sideband64k, w)
	case caps["side-band"]:
		mux = sideband.NewMuxer(sideband.Sideband, w)
	}
	if mux != nil {
		dst = mux
		if !caps["no-progress"] {
			mux.WriteChannel(sideband.ProgressMessage, []byte(fmt.Sprintf("Enumerating objects: %d, done.\n", len(objs))))
		}
	}
	enc := packfile.NewEncoder(ctxWriter{ctx: ctx, w: dst}, st, false)
	if _, err := enc.Encode(objs, 0); err != nil {
		if mux != nil {
			mux.WriteChannel(sideband.ErrorMessage, []byte("upload-pack: "+err.Error()+"\n"))
			return nil
		}
		return fmt.Errorf("write pack: %w", err)
	}
	if mux != nil {
		if !caps["no-progress"] {
			mux.WriteChannel(sideband.ProgressMessage, []byte(fmt.Sprintf("Total %d (delta 0), reused 0 (delta 0), pack-reused 0\n", len(objs))))
		}
		return pktline.NewEncoder(w).Flush()
	}
	return nil
}

// ctxWriter stops a pack mid-stream when the client went away.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
