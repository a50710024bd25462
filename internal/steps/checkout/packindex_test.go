package checkout

import (
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// rawObject is one object of a hand-built pack.
type rawObject struct {
	typ  plumbing.ObjectType
	data []byte        // content, or delta data for deltas
	base int           // OFS_DELTA: index of the base object
	ref  plumbing.Hash // REF_DELTA: id of the base
}

// buildPack writes a version 2 pack of objs.
func buildPack(objs []rawObject) []byte {
	var b bytes.Buffer
	b.WriteString("PACK")
	binary.Write(&b, binary.BigEndian, uint32(2))
	binary.Write(&b, binary.BigEndian, uint32(len(objs)))
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = b.Len()
		size := len(o.data)
		c := byte(o.typ)<<4 | byte(size&15)
		for size >>= 4; size > 0; size >>= 7 {
			b.WriteByte(c | 0x80)
			c = byte(size & 0x7f)
		}
		b.WriteByte(c)
		switch o.typ {
		case plumbing.OFSDeltaObject:
			rel := offsets[i] - offsets[o.base]
			var enc [10]byte
			n := len(enc) - 1
			enc[n] = byte(rel & 0x7f)
			for rel >>= 7; rel != 0; rel >>= 7 {
				rel--
				n--
				enc[n] = 0x80 | byte(rel&0x7f)
			}
			b.Write(enc[n:])
		case plumbing.REFDeltaObject:
			b.Write(o.ref[:])
		}
		zw := zlib.NewWriter(&b)
		zw.Write(o.data)
		zw.Close()
	}
	sum := sha1.Sum(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// makeDelta encodes target as a copy of base's common prefix plus literal
// bytes.
func makeDelta(base, target []byte) []byte {
	var d []byte
	leb := func(n int) {
		for n >= 0x80 {
			d = append(d, byte(n)|0x80)
			n >>= 7
		}
		d = append(d, byte(n))
	}
	leb(len(base))
	leb(len(target))
	p := 0
	for p < len(base) && p < len(target) && p < 0xffff && base[p] == target[p] {
		p++
	}
	if p > 0 {
		d = append(d, 0x80|0x10|0x20, byte(p), byte(p>>8))
	}
	for rest := target[p:]; len(rest) > 0; {
		n := min(len(rest), 127)
		d = append(d, byte(n))
		d = append(d, rest[:n]...)
		rest = rest[n:]
	}
	return d
}

// handPacks are small packs with every kind of object and reference.
func handPacks() map[string][]byte {
	base := []byte(strings.Repeat("line of text\n", 40))
	v2 := append(bytes.Clone(base), "and one more\n"...)
	v3 := append(bytes.Clone(v2), "and the last\n"...)
	blob := func(b []byte) plumbing.Hash { return objectHash(plumbing.BlobObject, b) }
	bh := blob(base)
	tree := []byte("100644 a.txt\x00" + string(bh[:]))
	return map[string][]byte{
		"one blob": buildPack([]rawObject{{typ: plumbing.BlobObject, data: []byte("hello\n")}}),
		"every type": buildPack([]rawObject{
			{typ: plumbing.BlobObject, data: base},
			{typ: plumbing.TreeObject, data: tree},
			{typ: plumbing.CommitObject, data: []byte("tree " + objectHash(plumbing.TreeObject, tree).String() + "\nauthor A <a@b> 1 +0000\ncommitter A <a@b> 1 +0000\n\nm\n")},
			{typ: plumbing.TagObject, data: []byte("object " + blob(base).String() + "\ntype blob\ntag t\ntagger A <a@b> 1 +0000\n\nt\n")},
			{typ: plumbing.BlobObject, data: nil},
		}),
		"ofs chain": buildPack([]rawObject{
			{typ: plumbing.BlobObject, data: base},
			{typ: plumbing.OFSDeltaObject, base: 0, data: makeDelta(base, v2)},
			{typ: plumbing.OFSDeltaObject, base: 1, data: makeDelta(v2, v3)},
		}),
		"ref delta before its base, then ofs on it": buildPack([]rawObject{
			{typ: plumbing.REFDeltaObject, ref: blob(base), data: makeDelta(base, v2)},
			{typ: plumbing.BlobObject, data: base},
			{typ: plumbing.OFSDeltaObject, base: 0, data: makeDelta(v2, v3)},
		}),
	}
}

// duplicatePack holds one object twice, which git's index-pack refuses and
// go-git's parser (so the step, before and now) accepts, indexing the first.
func duplicatePack() []byte {
	base := []byte(strings.Repeat("line of text\n", 40))
	return buildPack([]rawObject{
		{typ: plumbing.BlobObject, data: base},
		{typ: plumbing.BlobObject, data: base},
		{typ: plumbing.OFSDeltaObject, base: 1, data: makeDelta(base, append(bytes.Clone(base), '!'))},
	})
}

// historyRepo has history with deltas: a few files edited over commits, an
// annotated tag.
func historyRepo(t *testing.T, w *world) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hist")
	w.git(t.TempDir(), "init", "-q", "-b", "main", dir)
	rng := rand.New(rand.NewPCG(1, 2))
	body := make([]string, 6)
	for i := range body {
		for range 300 {
			body[i] += fmt.Sprintf("line %d of file %d\n", rng.IntN(1000), i)
		}
	}
	for c := range 8 {
		for i := range body {
			if (c+i)%3 == 0 {
				body[i] += fmt.Sprintf("edit %d\n", c)
			}
			mustWrite(t, filepath.Join(dir, fmt.Sprintf("d%d", i%2), fmt.Sprintf("f%d.txt", i)), body[i])
		}
		w.git(dir, "add", "-A")
		w.git(dir, "-c", "user.name=T", "-c", "user.email=t@localhost", "commit", "-qm", fmt.Sprintf("c%d", c))
	}
	w.git(dir, "-c", "user.name=T", "-c", "user.email=t@localhost", "tag", "-a", "-m", "v1", "v1")
	return dir
}

// feed writes pack into a new packIndexer in dir in uneven chunks and
// closes it; it returns the first error and how often the storage was told
// to reindex.
func feed(t *testing.T, dir string, pack []byte, seed uint64) (int, error) {
	t.Helper()
	reindexed := 0
	pw, err := newPackIndexer(dir, func() { reindexed++ })
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	var werr error
	for rest := pack; len(rest) > 0 && werr == nil; {
		n := min(len(rest), 1+rng.IntN(70000))
		_, werr = pw.Write(rest[:n])
		rest = rest[n:]
	}
	cerr := pw.Close()
	if werr != nil {
		return reindexed, werr
	}
	return reindexed, cerr
}

func readIdx(t *testing.T, path string) *idxfile.MemoryIndex {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	idx := idxfile.NewMemoryIndex()
	if err := idxfile.NewDecoder(f).Decode(idx); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return idx
}

func idxEntries(t *testing.T, idx *idxfile.MemoryIndex) []string {
	t.Helper()
	it, err := idx.Entries()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		e, err := it.Next()
		if err != nil {
			break
		}
		out = append(out, fmt.Sprintf("%s offset=%d crc=%08x", e.Hash, e.Offset, e.CRC32))
	}
	return out
}

// indexLikeGit indexes pack with packIndexer and with `git index-pack`, and
// compares the two indexes entry by entry.
func indexLikeGit(t *testing.T, w *world, pack []byte) {
	t.Helper()
	ref := filepath.Join(t.TempDir(), "ref.pack")
	if err := os.WriteFile(ref, pack, 0o644); err != nil {
		t.Fatal(err)
	}
	w.git(filepath.Dir(ref), "index-pack", "--strict", ref)
	want := readIdx(t, strings.TrimSuffix(ref, ".pack")+".idx")

	dir := filepath.Join(t.TempDir(), "objects", "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	reindexed, err := feed(t, dir, pack, uint64(len(pack)))
	if err != nil {
		t.Fatalf("index the pack: %v", err)
	}
	if reindexed != 1 {
		t.Errorf("the storage was told to reindex %d times, want once", reindexed)
	}
	name := "pack-" + plumbing.Hash(want.PackfileChecksum).String()
	files, _ := os.ReadDir(dir)
	if len(files) != 2 || files[0].Name() != name+".idx" || files[1].Name() != name+".pack" {
		var got []string
		for _, f := range files {
			got = append(got, f.Name())
		}
		t.Fatalf("the pack directory holds %v, want %s.{idx,pack}", got, name)
	}
	saved, err := os.ReadFile(filepath.Join(dir, name+".pack"))
	if err != nil || !bytes.Equal(saved, pack) {
		t.Fatalf("the saved pack differs from the one received (%v)", err)
	}
	for _, f := range []string{name + ".idx", name + ".pack"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o444 {
			t.Errorf("%s: mode %v (%v), want read-only", f, fi.Mode(), err)
		}
	}
	got := readIdx(t, filepath.Join(dir, name+".idx"))
	if g, wnt := strings.Join(idxEntries(t, got), "\n"), strings.Join(idxEntries(t, want), "\n"); g != wnt {
		t.Fatalf("index entries:\n%s\nwant (git index-pack):\n%s", g, wnt)
	}
	// git agrees that the index describes the pack.
	w.git(dir, "verify-pack", filepath.Join(dir, name+".idx"))
}

func TestPackIndexerMatchesGit(t *testing.T) {
	w := cliWorld(t)
	src := historyRepo(t, w)
	for _, tc := range []struct {
		name   string
		args   []string
		deltas bool
	}{
		{"ofs deltas", []string{"--delta-base-offset"}, true},
		{"ref deltas", nil, true},
		{"no deltas", []string{"--window=0"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "p")
			sum := w.git(src, append(append([]string{"pack-objects", "--revs", "--all", "-q"}, tc.args...), out)...)
			pack, err := os.ReadFile(out + "-" + sum + ".pack")
			if err != nil {
				t.Fatal(err)
			}
			verify := w.git(src, "verify-pack", "-v", out+"-"+sum+".idx")
			if hasDeltas := strings.Contains(verify, "chain length"); hasDeltas != tc.deltas {
				t.Fatalf("the test pack has deltas = %t, want %t:\n%s", hasDeltas, tc.deltas, verify)
			}
			indexLikeGit(t, w, pack)
		})
	}
	for name, pack := range handPacks() {
		t.Run(name, func(t *testing.T) { indexLikeGit(t, w, pack) })
	}
	t.Run("duplicate object, like go-git", func(t *testing.T) {
		pack := duplicatePack()
		dir := t.TempDir()
		if _, err := feed(t, dir, pack, 3); err != nil {
			t.Fatal(err)
		}
		want, err := goGitIndex(bytes.NewReader(pack))
		if err != nil {
			t.Fatal(err)
		}
		wi, err := want.Index()
		if err != nil {
			t.Fatal(err)
		}
		got := readIdx(t, filepath.Join(dir, "pack-"+plumbing.Hash(wi.PackfileChecksum).String()+".idx"))
		if n, _ := got.Count(); n != 2 {
			t.Errorf("the index has %d objects, want 2", n)
		}
		if g, w := strings.Join(idxEntries(t, got), "\n"), strings.Join(idxEntries(t, wi), "\n"); g != w {
			t.Fatalf("index entries:\n%s\nwant (go-git):\n%s", g, w)
		}
	})
}

func TestPackIndexerRejectsBrokenPacks(t *testing.T) {
	pack := handPacks()["ofs chain"]
	flip := func(i int) []byte {
		b := bytes.Clone(pack)
		b[i] ^= 0x55
		return b
	}
	cases := map[string][]byte{
		"truncated":           pack[:len(pack)-30],
		"no trailer":          pack[:len(pack)-20],
		"wrong trailer":       flip(len(pack) - 1),
		"corrupt object data": flip(40),
		"not a pack":          append([]byte("PUCK"), pack[4:]...),
		"version 3":           append(append([]byte("PACK"), 0, 0, 0, 3), pack[8:]...),
		"header only":         pack[:12],
	}
	for name, broken := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			reindexed, err := feed(t, dir, broken, 1)
			if err == nil {
				t.Fatal("a broken pack was accepted")
			}
			t.Logf("error: %v", err)
			if reindexed != 0 {
				t.Error("the storage was told to reindex after a failure")
			}
			if files, _ := os.ReadDir(dir); len(files) != 0 {
				t.Errorf("files left behind: %v", files)
			}
		})
	}
	t.Run("nothing written", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := feed(t, dir, nil, 1); err != nil {
			t.Fatalf("an empty fetch failed: %v", err)
		}
		if files, _ := os.ReadDir(dir); len(files) != 0 {
			t.Errorf("files left behind: %v", files)
		}
	})
}

// FuzzIndexPack feeds arbitrary packs to the indexer. It must not panic,
// and whatever it accepts, go-git's parser must accept with the same index.
func FuzzIndexPack(f *testing.F) {
	for _, p := range handPacks() {
		f.Add(p)
	}
	f.Add(duplicatePack())
	f.Add([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := indexPack(bytes.NewReader(data), bytes.NewReader(data))
		if err != nil {
			return
		}
		want, err := goGitIndex(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("indexPack accepted a pack go-git's parser rejects: %v", err)
		}
		gi, err := got.Index()
		if err != nil {
			t.Fatal(err)
		}
		wi, err := want.Index()
		if err != nil {
			t.Fatal(err)
		}
		if g, w := strings.Join(idxEntries(t, gi), "\n"), strings.Join(idxEntries(t, wi), "\n"); g != w {
			t.Fatalf("index entries:\n%s\nwant (go-git):\n%s", g, w)
		}
	})
}
