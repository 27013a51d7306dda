package fleetrepo

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Change is one commit of the tracked branch that changed an app: written
// by reconciler (with trailers) or by a person (From and To then read from
// the diff of the app's version).
type Change struct {
	Commit   plumbing.Hash
	Author   object.Signature
	Subject  string
	Trailers Trailers // App always set; From/To when the version changed
}

// LogOptions select the changes Log returns.
type LogOptions struct {
	App   string        // only this app's changes; "" all
	From  plumbing.Hash // start here; zero: the last accepted tip
	Limit int           // at most this many commits walked; default 200
}

// Log returns the changes on the tracked branch, newest first, following
// first parents: upgrades, pauses and rollbacks (reconciler's commits, by
// their trailers) and version changes made by people (by their diff).
func (d *Desired) Log(ctx context.Context, o LogOptions) ([]Change, error) {
	if o.From.IsZero() {
		o.From = d.Accepted()
	}
	if o.Limit <= 0 {
		o.Limit = 200
	}
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	var out []Change
	h := o.From
	for i := 0; i < o.Limit && !h.IsZero() && ctx.Err() == nil; i++ {
		c, err := d.s.repo.CommitObject(h)
		if err != nil {
			return out, fmt.Errorf("history of %s at %s: %w", d.ref, short(h), err)
		}
		changes, err := d.changesOf(c)
		if err != nil {
			return out, fmt.Errorf("history of %s at %s: %w", d.ref, short(h), err)
		}
		for _, ch := range changes {
			if o.App == "" || ch.Trailers.App == o.App {
				out = append(out, ch)
			}
		}
		h = plumbing.ZeroHash
		if len(c.ParentHashes) > 0 {
			h = c.ParentHashes[0]
		}
	}
	return out, ctx.Err()
}

// changesOf returns a commit's changes: its trailers, or else one change
// per app whose version its diff changes. Caller holds mu.
func (d *Desired) changesOf(c *object.Commit) ([]Change, error) {
	base := Change{Commit: c.Hash, Author: c.Author, Subject: strings.SplitN(c.Message, "\n", 2)[0]}
	if t := ParseTrailers(c.Message); t.App != "" {
		base.Trailers = t
		return []Change{base}, nil
	}
	before, after, err := d.versionsAround(c)
	if err != nil {
		return nil, err
	}
	var out []Change
	for app, to := range after {
		if from, ok := before[app]; !ok || from != to {
			ch := base
			ch.Trailers = Trailers{App: app, From: from, To: to}
			out = append(out, ch)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Trailers.App < out[j].Trailers.App })
	return out, nil
}

// versionsAround returns the app versions declared in the .cue files the
// commit changed, before and after it. Caller holds mu.
func (d *Desired) versionsAround(c *object.Commit) (before, after map[string]string, err error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, nil, err
	}
	var ptree *object.Tree
	if len(c.ParentHashes) > 0 {
		if ptree, err = treeOf(d, c.ParentHashes[0]); err != nil {
			return nil, nil, err
		}
	}
	changes, err := object.DiffTree(ptree, tree)
	if err != nil {
		return nil, nil, err
	}
	before, after = map[string]string{}, map[string]string{}
	for _, ch := range changes {
		from, to, err := ch.Files()
		if err != nil {
			return nil, nil, err
		}
		addVersions(from, before)
		addVersions(to, after)
	}
	return before, after, nil
}

// addVersions adds the apps.<app>.version string literals of a .cue file.
func addVersions(f *object.File, into map[string]string) {
	if f == nil || !strings.HasSuffix(f.Name, ".cue") {
		return
	}
	src, err := fileBytes(f)
	if err != nil {
		return
	}
	file, err := parser.ParseFile(f.Name, src, parser.ParseComments)
	if err != nil {
		return
	}
	for _, apps := range findFields(file.Decls, []string{"apps"}) {
		for _, s := range structsOf(apps.Value) {
			for _, d := range s.Elts {
				fl, ok := d.(*ast.Field)
				if !ok {
					continue
				}
				if v := findFields([]ast.Decl{fl}, []string{labelName(fl.Label), "version"}); len(v) > 0 {
					into[labelName(fl.Label)] = unquote(string(src[v[0].Value.Pos().Offset():v[0].Value.End().Offset()]))
				}
			}
		}
	}
}
