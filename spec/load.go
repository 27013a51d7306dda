package spec

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/literal"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/fleetops/reconciler/internal/regfile"
)

// schemaSource is the fleet schema; schemaFile is the name its positions
// carry, which are never shown to users.
//
//go:embed schema.cue
var schemaSource string

const schemaFile = "<reconciler schema>"

// ErrNoFiles is returned when a fleet directory holds no .cue files.
var ErrNoFiles = errors.New("no .cue files")

// LoadDir loads the fleet in dir: every .cue file directly in it (names
// starting with "." or "_" are skipped), all of one package. Positions in
// errors carry the file names joined to dir as given. Problems in the specs
// are returned as *Errors; other errors name dir.
func LoadDir(dir string) (*Fleet, error) {
	files, err := ReadDir(dir)
	if err != nil {
		return nil, err
	}
	return LoadFiles(files)
}

// ReadDir reads the spec files of dir as LoadDir does, without evaluating
// them (for a caller that evaluates under limits, package spec/isolate).
// The size limits are checked before any file is read.
func ReadDir(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load fleet %s: %w", dir, err)
	}
	sizes := make(map[string]int64)
	for _, e := range entries {
		if !e.Type().IsRegular() || !isSpecFile(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("load fleet %s: %w", dir, err)
		}
		sizes[filepath.Join(dir, e.Name())] = info.Size()
	}
	if len(sizes) == 0 {
		return nil, fmt.Errorf("load fleet %s: %w", dir, ErrNoFiles)
	}
	if err := checkSizes(sizes); err != nil {
		return nil, fmt.Errorf("load fleet %s: %w", dir, err)
	}
	files := make(map[string][]byte, len(sizes))
	for name := range sizes {
		b, err := readFile(name)
		if err != nil {
			return nil, fmt.Errorf("load fleet %s: %w", dir, err)
		}
		files[name] = b
	}
	return files, nil
}

// LoadCommit loads the fleet in directory dir ("" or "." for the root) of
// commit's tree, reading the objects from repo without a checkout. Positions
// in errors carry the paths inside the repository.
func LoadCommit(repo *git.Repository, commit plumbing.Hash, dir string) (*Fleet, error) {
	files, err := ReadCommit(repo, commit, dir)
	if err != nil {
		return nil, err
	}
	return LoadFiles(files)
}

// ReadCommit reads the spec files in directory dir of commit's tree, as
// LoadCommit does, without evaluating them: a caller that evaluates
// elsewhere (package spec/isolate, under limits) passes them to LoadFiles
// there. The size limits are checked before any file is read.
func ReadCommit(repo *git.Repository, commit plumbing.Hash, dir string) (map[string][]byte, error) {
	files, err := commitFiles(repo, commit, path.Clean("/" + dir)[1:])
	if err != nil {
		return nil, fmt.Errorf("load fleet %s at commit %s: %w", displayDir(dir), commit, err)
	}
	return files, nil
}

// readFile reads a regular file of at most MaxFileBytes (it may have grown
// since it was listed).
func readFile(name string) ([]byte, error) {
	f, err := regfile.Open(name) // a FIFO named *.cue would block
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err == nil && len(b) > MaxFileBytes {
		err = checkSizes(map[string]int64{name: int64(len(b))})
	}
	return b, err
}

func displayDir(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}

// commitFiles reads the spec files directly in dir of commit's tree.
func commitFiles(repo *git.Repository, commit plumbing.Hash, dir string) (map[string][]byte, error) {
	c, err := repo.CommitObject(commit)
	if err != nil {
		return nil, err
	}
	tree, err := c.Tree()
	if err == nil && dir != "" {
		tree, err = tree.Tree(dir)
	}
	if err != nil {
		return nil, err
	}
	blobs := make(map[string]*object.Blob)
	sizes := make(map[string]int64)
	for _, e := range tree.Entries {
		if (e.Mode != filemode.Regular && e.Mode != filemode.Executable) || !isSpecFile(e.Name) {
			continue
		}
		name := path.Join(dir, e.Name)
		blob, err := repo.BlobObject(e.Hash)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		blobs[name], sizes[name] = blob, blob.Size
	}
	if len(blobs) == 0 {
		return nil, ErrNoFiles
	}
	if err := checkSizes(sizes); err != nil {
		return nil, err
	}
	files := make(map[string][]byte, len(blobs))
	for name, blob := range blobs {
		b, err := readBlob(blob)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		files[name] = b
	}
	return files, nil
}

func readBlob(blob *object.Blob) ([]byte, error) {
	r, err := blob.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// isSpecFile reports whether a file name is a spec file the loader reads.
func isSpecFile(name string) bool {
	return strings.HasSuffix(name, ".cue") && !strings.HasPrefix(name, ".") && !strings.HasPrefix(name, "_")
}

// LoadFiles loads a fleet from spec files given as name → content, all of
// one package; names appear in error positions as given. Each call uses its
// own cue.Context, so a long-running agent does not accumulate memory.
func LoadFiles(files map[string][]byte) (*Fleet, error) {
	if len(files) == 0 {
		return nil, ErrNoFiles
	}
	sizes := make(map[string]int64, len(files))
	for name, b := range files {
		sizes[name] = int64(len(b))
	}
	if err := checkSizes(sizes); err != nil {
		return nil, fmt.Errorf("load fleet: %w", err)
	}
	ctx := cuecontext.New()
	user, err := buildUser(ctx, files)
	if err != nil {
		return nil, err
	}
	if mayHoldBytes(files) {
		return fullLoad(ctx, user)
	}
	if f, ok, err := fastLoad(user); ok || err != nil {
		return f, err
	}
	return fullLoad(ctx, user)
}

// mayHoldBytes reports whether the files may hold a CUE bytes value ('abc',
// bytes), which JSON shows as a base64 string: the fast path cannot tell it
// from a string, so such fleets take the full path (a quote in a comment
// only costs time).
func mayHoldBytes(files map[string][]byte) bool {
	for _, b := range files {
		if bytes.ContainsRune(b, '\'') || bytes.Contains(b, []byte("bytes")) {
			return true
		}
	}
	return false
}

// fullLoad unifies the user's files with the schema and walks the result,
// reporting every problem with its position.
func fullLoad(ctx *cue.Context, user cue.Value) (*Fleet, error) {
	schema := ctx.CompileString(schemaSource, cue.Filename(schemaFile))
	if err := schema.Err(); err != nil {
		panic(fmt.Sprintf("spec: embedded schema does not compile: %v", err))
	}
	def := schema.LookupPath(cue.ParsePath("#Fleet"))
	v := user.Unify(def)
	nodes, err := check(user, v, def, schema)
	if err != nil {
		return nil, err
	}
	return decode(v, nodes)
}

// buildUser parses the files and builds them as one CUE instance.
func buildUser(ctx *cue.Context, files map[string][]byte) (cue.Value, error) {
	var errs errorList
	inst := build.NewContext().NewInstance("", nil)
	var first *ast.File // the first file parsed: its package is the fleet's
	for _, name := range slices.Sorted(maps.Keys(files)) {
		f, err := parser.ParseFile(name, files[name], parser.AllErrors)
		if err != nil {
			errs.addCUE(err)
			continue
		}
		if first == nil {
			first = f
		} else if f.PackageName() != first.PackageName() {
			errs.add(packagePos(f), "%s, want %s like %s (one package per directory)",
				packageClause(f), packageClause(first), first.Filename)
			continue
		}
		checkImports(&errs, f)
		if err := inst.AddSyntax(f); err != nil {
			errs.addCUE(err)
		}
	}
	if err := errs.err(); err != nil {
		return cue.Value{}, err
	}
	return ctx.BuildInstance(inst), nil
}

// checkImports records imports outside CUE's standard library: a fleet is
// one package, read without a module.
func checkImports(errs *errorList, f *ast.File) {
	for spec := range f.ImportSpecs() {
		path, err := literal.Unquote(spec.Path.Value)
		if err != nil {
			continue // the parser has reported it
		}
		if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") {
			errs.add(spec.Path.Pos(), "import %q: want a package of CUE's standard library (such as \"strings\"); a fleet repo is one package", path)
		}
	}
}

// packagePos is the position of f's package clause, or of the file.
func packagePos(f *ast.File) token.Pos {
	for _, d := range f.Decls {
		if p, ok := d.(*ast.Package); ok {
			return p.Pos()
		}
	}
	return f.Pos()
}

// packageClause describes f's package clause.
func packageClause(f *ast.File) string {
	if f.PackageName() == "" {
		return "no package clause"
	}
	return "package " + f.PackageName()
}

// check walks the fleet v (user unified with the schema def) and returns
// the declared nodes, decoded on the way, or every problem as *Errors.
// schema is the compiled schema.cue, whose #Metric and #Stage check the
// elements of health.metrics and rollout.stages.
func check(user, v, def, schema cue.Value) (map[string]Node, error) {
	c := &checker{user: user, metric: schema.LookupPath(cue.ParsePath("#Metric")), stage: schema.LookupPath(cue.ParsePath("#Stage"))}
	c.walkFleet(v, def)
	c.flush()
	if len(c.errs.list) == 0 {
		// A safety net: anything the walk did not reach (such as an
		// unresolved reference) is still reported.
		if err := v.Validate(cue.Concrete(true)); err != nil {
			c.errs.addCUE(err)
		}
	}
	return c.declared, c.errs.err()
}

// decode turns a valid fleet value into Go values, defaults filled in
// (defaults.go), with the nodes check decoded. It goes through JSON: a
// third faster than Value.Decode on 1,000 apps, and the types already read
// their JSON form.
func decode(v cue.Value, nodes map[string]Node) (*Fleet, error) {
	f := Fleet{Apps: map[string]App{}, Nodes: nodes}
	if apps := v.LookupPath(cue.MakePath(cue.Str("apps"))); apps.Exists() {
		b, err := apps.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("decode fleet: %w", err)
		}
		if err := json.Unmarshal(b, &f.Apps); err != nil {
			return nil, fmt.Errorf("decode fleet: %w", err)
		}
	}
	for name, app := range f.Apps {
		app.Name = name
		f.Apps[name] = app
	}
	return &f, nil
}
