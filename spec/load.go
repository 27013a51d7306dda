package spec

import (
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
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load fleet %s: %w", dir, err)
	}
	files := make(map[string][]byte)
	for _, e := range entries {
		if !e.Type().IsRegular() || !isSpecFile(e.Name()) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("load fleet %s: %w", dir, err)
		}
		files[name] = b
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("load fleet %s: %w", dir, ErrNoFiles)
	}
	return LoadFiles(files)
}

// LoadCommit loads the fleet in directory dir ("" or "." for the root) of
// commit's tree, reading the objects from repo without a checkout. Positions
// in errors carry the paths inside the repository.
func LoadCommit(repo *git.Repository, commit plumbing.Hash, dir string) (*Fleet, error) {
	files, err := commitFiles(repo, commit, path.Clean("/" + dir)[1:])
	if err != nil {
		return nil, fmt.Errorf("load fleet %s at commit %s: %w", displayDir(dir), commit, err)
	}
	return LoadFiles(files)
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
	files := make(map[string][]byte)
	for _, e := range tree.Entries {
		if (e.Mode != filemode.Regular && e.Mode != filemode.Executable) || !isSpecFile(e.Name) {
			continue
		}
		b, err := readBlob(repo, e.Hash)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path.Join(dir, e.Name), err)
		}
		files[path.Join(dir, e.Name)] = b
	}
	if len(files) == 0 {
		return nil, ErrNoFiles
	}
	return files, nil
}

func readBlob(repo *git.Repository, h plumbing.Hash) ([]byte, error) {
	blob, err := repo.BlobObject(h)
	if err != nil {
		return nil, err
	}
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
	ctx := cuecontext.New()
	user, err := buildUser(ctx, files)
	if err != nil {
		return nil, err
	}
	schema := ctx.CompileString(schemaSource, cue.Filename(schemaFile))
	if err := schema.Err(); err != nil {
		panic(fmt.Sprintf("spec: embedded schema does not compile: %v", err))
	}
	def := schema.LookupPath(cue.ParsePath("#Fleet"))
	v := user.Unify(def)
	if err := check(user, v, def); err != nil {
		return nil, err
	}
	return decode(v)
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
// every problem as *Errors, or nil.
func check(user, v, def cue.Value) error {
	c := &checker{user: user}
	if err := v.LookupPath(cue.ParsePath("nodes")).Decode(&c.declared); err != nil {
		c.declared = nil
	}
	c.walk(v, def)
	c.flush()
	if len(c.errs.list) == 0 {
		// A safety net: anything the walk did not reach (such as an
		// unresolved reference) is still reported.
		if err := v.Validate(cue.Concrete(true)); err != nil {
			c.errs.addCUE(err)
		}
	}
	return c.errs.err()
}

// decode turns a valid fleet value into Go values, defaults filled in. It
// goes through JSON: a third faster than Value.Decode on 1,000 apps, and the
// types already read their JSON form.
func decode(v cue.Value) (*Fleet, error) {
	b, err := v.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("decode fleet: %w", err)
	}
	var f Fleet
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("decode fleet: %w", err)
	}
	if f.Apps == nil {
		f.Apps = map[string]App{}
	}
	for name, app := range f.Apps {
		app.Name = name
		f.Apps[name] = app
	}
	return &f, nil
}
