package checkout

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Indexing a fetched pack, the way `git index-pack` does, in one pass.
//
// go-git's own pack writer (dotgit.PackWriter, packfile.Parser) inflates
// every object of the pack twice — once to hash it while the pack arrives,
// and once more afterwards while "resolving deltas", where it re-reads every
// object, deltas or not — and resolves each delta twice. On a fresh clone
// that was about half of the fetch. indexingStorage swaps in packIndexer,
// which hashes every whole object while the pack arrives and, once it is
// complete, re-reads only the objects other objects are deltas of. The
// pack, the .idx (written with go-git's idxfile encoder) and the storage's
// view of them end up as go-git's writer leaves them.
//
// Should this indexer reject a pack, go-git's parser indexes the saved pack
// instead, so a pack this code does not understand fails (or not) exactly
// as it did with go-git alone.

// indexingStorage is a repository storage whose fetches index packs with
// packIndexer. Everything else is the embedded go-git storage.
type indexingStorage struct {
	*filesystem.Storage
	packDir string // <git dir>/objects/pack
}

// PackfileWriter implements storer.PackfileWriter for go-git's fetch.
func (s *indexingStorage) PackfileWriter() (io.WriteCloser, error) {
	if err := os.MkdirAll(s.packDir, 0o755); err != nil {
		return nil, err
	}
	return newPackIndexer(s.packDir, s.Storage.Reindex)
}

// maxDeltaDepth is the longest delta chain accepted (git's pack-objects
// limit, which go-git enforces too).
const maxDeltaDepth = 4095

// errMalformedPack is the indexer's own rejection of a pack.
var errMalformedPack = errors.New("malformed pack")

// packIndexer receives a pack (Write), stores it in a temporary file and
// indexes it on another goroutine as it arrives; Close waits for the index
// and moves pack and index into place.
type packIndexer struct {
	dir     string
	tmp     *os.File
	pw      *io.PipeWriter
	done    chan indexResult
	reindex func()
	written int64
}

type indexResult struct {
	idx *idxfile.Writer
	err error
}

func newPackIndexer(dir string, reindex func()) (*packIndexer, error) {
	tmp, err := os.CreateTemp(dir, "tmp_pack_")
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	w := &packIndexer{dir: dir, tmp: tmp, pw: pw, done: make(chan indexResult, 1), reindex: reindex}
	go func() {
		idx, err := indexPack(pr, tmp)
		if err != nil && !errors.Is(err, errMalformedPack) {
			pr.CloseWithError(err) // fail the writer's next Write
		} else {
			// Take the rest of the stream: whatever follows the pack, or,
			// when this indexer gave up, the rest of the pack for go-git's.
			_, _ = io.Copy(io.Discard, pr)
		}
		w.done <- indexResult{idx, err}
	}()
	return w, nil
}

// Write stores p and hands it to the indexer, which reads it before Write
// returns: the pack file holds every byte the indexer has seen.
func (w *packIndexer) Write(p []byte) (int, error) {
	if _, err := w.tmp.Write(p); err != nil {
		w.pw.CloseWithError(err)
		return 0, err
	}
	n, err := w.pw.Write(p)
	w.written += int64(n)
	return n, err
}

// Close finishes the index and saves pack and index as
// objects/pack/pack-<checksum>.{pack,idx}. Nothing written: nothing saved.
func (w *packIndexer) Close() error {
	w.pw.Close()
	res := <-w.done
	defer os.Remove(w.tmp.Name()) // gone already when saved
	if w.written == 0 {
		w.tmp.Close()
		return nil
	}
	if res.err != nil && errors.Is(res.err, errMalformedPack) {
		res.idx, res.err = goGitIndex(w.tmp)
	}
	if err := w.tmp.Close(); err != nil && res.err == nil {
		res.err = err
	}
	if res.err != nil {
		return fmt.Errorf("index the fetched pack: %w", res.err)
	}
	if err := w.save(res.idx); err != nil {
		return fmt.Errorf("save the fetched pack: %w", err)
	}
	w.reindex()
	return nil
}

// goGitIndex indexes a saved pack with go-git's parser.
func goGitIndex(f io.ReadSeeker) (*idxfile.Writer, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	iw := new(idxfile.Writer)
	p, err := packfile.NewParser(packfile.NewScanner(f), iw)
	if err != nil {
		return nil, err
	}
	if _, err := p.Parse(); err != nil {
		return nil, err
	}
	return iw, nil
}

// save writes the index next to the pack, then renames the pack into place
// (a pack is found by its .idx, so the pair is complete once both exist).
func (w *packIndexer) save(iw *idxfile.Writer) error {
	idx, err := iw.Index()
	if err != nil {
		return err
	}
	base := filepath.Join(w.dir, "pack-"+plumbing.Hash(idx.PackfileChecksum).String())
	if _, err := os.Stat(base + ".pack"); err == nil {
		return nil // the same pack is there already
	}
	if _, err := os.Stat(base + ".idx"); err != nil {
		f, err := os.CreateTemp(w.dir, "tmp_idx_")
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(f, 64<<10)
		_, err = idxfile.NewEncoder(bw).Encode(idx)
		if err == nil {
			err = bw.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(f.Name(), 0o444)
		}
		if err == nil {
			err = os.Rename(f.Name(), base+".idx")
		}
		if err != nil {
			os.Remove(f.Name())
			return err
		}
	}
	if err := os.Chmod(w.tmp.Name(), 0o444); err != nil {
		return err
	}
	return os.Rename(w.tmp.Name(), base+".pack")
}

// packObject is one object of the pack being indexed.
type packObject struct {
	offset    int64 // of its header
	dataStart int64 // of its compressed data
	dataEnd   int64
	crc       uint32
	typ       plumbing.ObjectType // for a delta: its result's, once resolved
	delta     bool
	size      int64         // inflated size (of the delta data, for a delta)
	base      int64         // OFS_DELTA: offset of the base
	baseRef   plumbing.Hash // REF_DELTA: id of the base
	hash      plumbing.Hash // known for whole objects after the first pass
	resolved  bool
}

// indexPack reads a pack from r, whose bytes are also in f (written there
// before r returns them), and returns its index.
func indexPack(r io.Reader, f io.ReaderAt) (*idxfile.Writer, error) {
	pr := newPackReader(r)
	var hdr [12]byte
	if _, err := io.ReadFull(pr, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, packfile.ErrEmptyPackfile
		}
		return nil, err
	}
	if !bytes.Equal(hdr[:4], []byte("PACK")) {
		return nil, fmt.Errorf("%w: no PACK signature", errMalformedPack)
	}
	if v := binary.BigEndian.Uint32(hdr[4:8]); v != 2 {
		return nil, fmt.Errorf("%w: version %d", errMalformedPack, v)
	}
	count := binary.BigEndian.Uint32(hdr[8:12])

	objs := make([]packObject, 0, min(count, 1<<16))
	byOffset := make(map[int64]int, min(count, 1<<16))
	zr := &inflater{}
	buf := make([]byte, 64<<10)
	for range count {
		o, err := pr.object(zr, buf)
		if err != nil {
			return nil, err
		}
		if o.delta && o.baseRef.IsZero() {
			if _, ok := byOffset[o.base]; !ok {
				return nil, fmt.Errorf("%w: delta at %d has no object at its base offset %d", errMalformedPack, o.offset, o.base)
			}
		}
		byOffset[o.offset] = len(objs)
		objs = append(objs, o)
	}
	sum := pr.sum()
	var trailer plumbing.Hash
	if _, err := io.ReadFull(pr, trailer[:]); err != nil {
		return nil, err
	}
	if trailer != sum {
		return nil, fmt.Errorf("%w: checksum mismatch: %s instead of %s", errMalformedPack, trailer, sum)
	}

	if err := resolveDeltas(f, objs, zr); err != nil {
		return nil, err
	}
	iw := new(idxfile.Writer)
	if err := iw.OnHeader(count); err != nil {
		return nil, err
	}
	for i := range objs {
		iw.Add(objs[i].hash, uint64(objs[i].offset), objs[i].crc)
	}
	if err := iw.OnFooter(trailer); err != nil {
		return nil, err
	}
	return iw, nil
}

// resolveDeltas hashes every delta: each whole object that is a base is
// inflated once more, and its deltas applied to it depth first.
func resolveDeltas(f io.ReaderAt, objs []packObject, zr *inflater) error {
	ofsChildren := map[int64][]int{}
	refChildren := map[plumbing.Hash][]int{}
	deltas := 0
	for i := range objs {
		o := &objs[i]
		if !o.delta {
			continue
		}
		deltas++
		if o.baseRef.IsZero() {
			ofsChildren[o.base] = append(ofsChildren[o.base], i)
		} else {
			refChildren[o.baseRef] = append(refChildren[o.baseRef], i)
		}
	}
	if deltas == 0 {
		return nil
	}
	var resolve func(base *packObject, content []byte, depth int) error
	resolve = func(base *packObject, content []byte, depth int) error {
		kids := slices.Concat(ofsChildren[base.offset], refChildren[base.hash])
		if len(kids) == 0 {
			return nil
		}
		if depth > maxDeltaDepth {
			return fmt.Errorf("%w: delta chain longer than %d", errMalformedPack, maxDeltaDepth)
		}
		for _, k := range kids {
			c := &objs[k]
			if c.resolved {
				continue
			}
			d, err := zr.inflateAt(f, c)
			if err != nil {
				return err
			}
			out, err := packfile.PatchDelta(content, d)
			if err != nil {
				return fmt.Errorf("%w: delta at %d: %v", errMalformedPack, c.offset, err)
			}
			c.typ, c.resolved, c.hash = base.typ, true, objectHash(base.typ, out)
			deltas--
			if err := resolve(c, out, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range objs {
		o := &objs[i]
		if o.delta || (len(ofsChildren[o.offset]) == 0 && len(refChildren[o.hash]) == 0) {
			continue
		}
		content, err := zr.inflateAt(f, o)
		if err != nil {
			return err
		}
		if err := resolve(o, content, 1); err != nil {
			return err
		}
		if deltas == 0 {
			return nil
		}
	}
	for i := range objs {
		if o := &objs[i]; o.delta && !o.resolved {
			if !o.baseRef.IsZero() {
				return fmt.Errorf("%w: %w: %s", errMalformedPack, packfile.ErrReferenceDeltaNotFound, o.baseRef)
			}
			return fmt.Errorf("%w: the delta at %d has no base", errMalformedPack, o.offset)
		}
	}
	return nil
}

func objectHash(t plumbing.ObjectType, content []byte) plumbing.Hash {
	h := plumbing.NewHasher(t, int64(len(content)))
	h.Write(content)
	return h.Sum()
}

// inflater inflates zlib streams, reusing its state.
type inflater struct {
	zr  io.ReadCloser
	sec *bufio.Reader
}

func (z *inflater) reset(r io.Reader) error {
	if z.zr == nil {
		zr, err := zlib.NewReader(r)
		if err != nil {
			return err
		}
		z.zr = zr
		return nil
	}
	return z.zr.(zlib.Resetter).Reset(r, nil)
}

// inflateAt inflates o's data again from the saved pack.
func (z *inflater) inflateAt(f io.ReaderAt, o *packObject) ([]byte, error) {
	sr := io.NewSectionReader(f, o.dataStart, o.dataEnd-o.dataStart)
	if z.sec == nil {
		z.sec = bufio.NewReaderSize(sr, 32<<10)
	} else {
		z.sec.Reset(sr)
	}
	if err := z.reset(z.sec); err != nil {
		return nil, fmt.Errorf("%w: object at %d: %v", errMalformedPack, o.offset, err)
	}
	out := make([]byte, o.size)
	if _, err := io.ReadFull(z.zr, out); err != nil {
		return nil, fmt.Errorf("%w: object at %d: %v", errMalformedPack, o.offset, err)
	}
	return out, nil
}

// packReader reads a pack stream byte-exactly (it is the io.ByteReader the
// inflater reads, so zlib never reads past an object), keeping its offset,
// the CRC-32 of the current object's bytes and the checksum of the whole.
type packReader struct {
	r        io.Reader
	buf      []byte
	pos, end int
	off      int64 // stream offset of buf[0]
	pack     hash.Hash
	packFrom int // buf[packFrom:pos] is not yet in pack
	crc      uint32
	crcFrom  int // buf[crcFrom:pos] is not yet in crc
}

func newPackReader(r io.Reader) *packReader {
	return &packReader{r: r, buf: make([]byte, 256<<10), pack: sha1.New()}
}

// account adds the consumed bytes to the checksums.
func (p *packReader) account() {
	p.pack.Write(p.buf[p.packFrom:p.pos])
	p.crc = crc32.Update(p.crc, crc32.IEEETable, p.buf[p.crcFrom:p.pos])
	p.packFrom, p.crcFrom = p.pos, p.pos
}

func (p *packReader) fill() error {
	p.account()
	p.off += int64(p.end)
	p.pos, p.end, p.packFrom, p.crcFrom = 0, 0, 0, 0
	for p.end == 0 {
		n, err := p.r.Read(p.buf)
		p.end = n
		if n == 0 && err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func (p *packReader) ReadByte() (byte, error) {
	if p.pos == p.end {
		if err := p.fill(); err != nil {
			return 0, err
		}
	}
	b := p.buf[p.pos]
	p.pos++
	return b, nil
}

func (p *packReader) Read(b []byte) (int, error) {
	if p.pos == p.end {
		if err := p.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(b, p.buf[p.pos:p.end])
	p.pos += n
	return n, nil
}

func (p *packReader) offset() int64 { return p.off + int64(p.pos) }

// sum is the checksum of everything read so far.
func (p *packReader) sum() plumbing.Hash {
	p.account()
	var h plumbing.Hash
	copy(h[:], p.pack.Sum(nil))
	return h
}

// object reads the next object: its header, then its data, inflated into
// its hash (a whole object) or counted (a delta).
func (p *packReader) object(z *inflater, buf []byte) (packObject, error) {
	p.account()
	p.crc = 0
	o := packObject{offset: p.offset()}
	c, err := p.ReadByte()
	if err != nil {
		return o, err
	}
	o.typ = plumbing.ObjectType((c >> 4) & 7)
	o.size = int64(c & 15)
	for shift := 4; c&0x80 != 0; shift += 7 {
		if shift > 64-7 {
			return o, fmt.Errorf("%w: object size overflows at %d", errMalformedPack, o.offset)
		}
		if c, err = p.ReadByte(); err != nil {
			return o, err
		}
		o.size += int64(c&0x7f) << shift
	}
	if o.size < 0 {
		return o, fmt.Errorf("%w: object size overflows at %d", errMalformedPack, o.offset)
	}
	switch o.typ {
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
	case plumbing.OFSDeltaObject:
		o.delta = true
		var rel int64
		if c, err = p.ReadByte(); err != nil {
			return o, err
		}
		rel = int64(c & 0x7f)
		for c&0x80 != 0 {
			if rel >= (1<<62)>>7 {
				return o, fmt.Errorf("%w: delta offset overflows at %d", errMalformedPack, o.offset)
			}
			if c, err = p.ReadByte(); err != nil {
				return o, err
			}
			rel = ((rel + 1) << 7) | int64(c&0x7f)
		}
		if rel <= 0 || rel > o.offset {
			return o, fmt.Errorf("%w: invalid delta offset at %d", errMalformedPack, o.offset)
		}
		o.base = o.offset - rel
	case plumbing.REFDeltaObject:
		o.delta = true
		if _, err := io.ReadFull(p, o.baseRef[:]); err != nil {
			return o, err
		}
		if o.baseRef.IsZero() {
			return o, fmt.Errorf("%w: delta at %d has a zero base id", errMalformedPack, o.offset)
		}
	default:
		return o, fmt.Errorf("%w: object type %d at %d", errMalformedPack, o.typ, o.offset)
	}
	o.dataStart = p.offset()
	if err := z.reset(p); err != nil {
		return o, fmt.Errorf("%w: object at %d: %v", errMalformedPack, o.offset, err)
	}
	var n int64
	if o.delta {
		n, err = io.CopyBuffer(io.Discard, z.zr, buf)
	} else {
		h := plumbing.NewHasher(o.typ, o.size)
		n, err = io.CopyBuffer(h, z.zr, buf)
		o.hash = h.Sum()
	}
	if err != nil {
		return o, fmt.Errorf("%w: object at %d: %v", errMalformedPack, o.offset, err)
	}
	if n != o.size {
		return o, fmt.Errorf("%w: object at %d inflates to %d bytes, its header says %d", errMalformedPack, o.offset, n, o.size)
	}
	o.dataEnd = p.offset()
	p.account()
	o.crc = p.crc
	return o, nil
}
