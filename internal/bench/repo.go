package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// repoShape is the repository the checkout benchmark generates.
type repoShape struct {
	Files   int // files in the last commit
	Commits int
	Seed    uint64
}

// generatedRepo is a bare repository made by generateRepo.
type generatedRepo struct {
	GitDir  string
	Head    string // commit id of refs/heads/main
	Files   int    // files in HEAD's tree
	Commits int
	Bytes   int64 // total size of HEAD's files
}

// words make file contents that compress and delta like source code rather
// than like random bytes.
var words = strings.Fields(`func return if else for range var const type struct interface map chan go defer
select case switch default package import nil true false error string int byte rune len cap append make new
ctx err ok value name path file line count index buffer reader writer client server request response config
options result status message event record session agent pool job step task log mask secret token`)

// generateRepo writes a bare repository of the given shape with git
// fast-import: the first commit holds half the files, every later commit
// adds its share of the rest and edits a few existing files, so the history
// has real deltas. The same seed always gives the same repository.
func generateRepo(ctx context.Context, dir string, shape repoShape) (*generatedRepo, error) {
	gitDir := filepath.Join(dir, "repo.git")
	if out, err := exec.CommandContext(ctx, "git", "init", "--quiet", "--bare", "--initial-branch=main", gitDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("generate repository: git init: %w: %s", err, out)
	}
	cmd := exec.CommandContext(ctx, "git", "-C", gitDir, "fast-import", "--quiet")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("generate repository: %w", err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("generate repository: start git fast-import: %w", err)
	}
	total, werr := writeHistory(stdin, shape)
	stdin.Close()
	if err := cmd.Wait(); err != nil || werr != nil {
		return nil, fmt.Errorf("generate repository: git fast-import: %v %v: %s", werr, err, stderr.String())
	}
	// A server packs its repositories; serve one that looks like it.
	if out, err := exec.CommandContext(ctx, "git", "-C", gitDir, "repack", "-a", "-d", "-q").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("generate repository: git repack: %w: %s", err, out)
	}
	head, err := exec.CommandContext(ctx, "git", "-C", gitDir, "rev-parse", "refs/heads/main").Output()
	if err != nil {
		return nil, fmt.Errorf("generate repository: rev-parse: %w", err)
	}
	return &generatedRepo{GitDir: gitDir, Head: strings.TrimSpace(string(head)), Files: shape.Files, Commits: shape.Commits, Bytes: total}, nil
}

// writeHistory writes the fast-import stream and returns the size of the
// last commit's files.
func writeHistory(w io.Writer, shape repoShape) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	rng := rand.New(rand.NewPCG(shape.Seed, shape.Seed^0x9e3779b97f4a7c15))
	commits := max(shape.Commits, 1)
	first := shape.Files / 2
	if commits == 1 {
		first = shape.Files
	}
	perCommit := 0
	if commits > 1 {
		perCommit = (shape.Files - first) / (commits - 1)
	}
	sizes := make([]int64, 0, shape.Files)
	when := int64(1_700_000_000)
	for c := 0; c < commits; c++ {
		add := perCommit
		switch {
		case c == 0:
			add = first
		case c == commits-1:
			add = shape.Files - len(sizes)
		}
		when += 3600
		msg := fmt.Sprintf("commit %d: add %d files", c+1, add)
		fmt.Fprintf(bw, "commit refs/heads/main\nmark :%d\ncommitter Bench <bench@localhost> %d +0000\ndata %d\n%s\n", c+1, when, len(msg), msg)
		if c > 0 {
			fmt.Fprintf(bw, "from :%d\n", c)
			// Edit a few existing files: history with deltas.
			for e := 0; e < 5 && len(sizes) > 0; e++ {
				i := rng.IntN(len(sizes))
				body := fileBody(rng, i, c)
				sizes[i] = int64(len(body))
				writeFile(bw, repoPath(i), body)
			}
		}
		for k := 0; k < add; k++ {
			i := len(sizes)
			body := fileBody(rng, i, c)
			sizes = append(sizes, int64(len(body)))
			writeFile(bw, repoPath(i), body)
		}
		bw.WriteString("\n")
	}
	var total int64
	for _, s := range sizes {
		total += s
	}
	return total, bw.Flush()
}

func writeFile(w *bufio.Writer, path, body string) {
	fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", path, len(body), body)
}

// repoPath spreads files over two directory levels, 100 files a directory.
func repoPath(i int) string {
	return fmt.Sprintf("pkg%02d/mod%02d/file%05d.go", i/1000, (i/100)%10, i)
}

// fileBody is 200 B to 3 KiB of word soup.
func fileBody(rng *rand.Rand, i, rev int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "// file %d, revision %d\npackage p%d\n\n", i, rev, i/1000)
	n := 200 + rng.IntN(2800)
	for b.Len() < n {
		for j := 0; j < 8; j++ {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(' ')
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// countFiles counts the regular files under dir, outside .git.
func countFiles(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n, err
}
