package cli

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"path"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/spec"
)

// writeFlags are the flags of the commands that write to the tracked branch.
type writeFlags struct {
	repoFlags
	signFlags
	author  string
	message string
	reason  string
}

func (w *writeFlags) register(c *cobra.Command) {
	w.repoFlags.register(c)
	fl := c.Flags()
	fl.StringVar(&w.author, "author", "", `commit author "Name <email>" (default: $GIT_AUTHOR_NAME and $GIT_AUTHOR_EMAIL, else $USER)`)
	fl.StringVarP(&w.message, "message", "m", "", "commit subject (default: one that says what changes)")
	fl.StringVar(&w.reason, "reason", "", "why, recorded in the Reconciler-Reason trailer")
	w.signFlags.register(fl)
}

// identity is who the commit is by.
func (w *writeFlags) identity(e *env) (fleetrepo.Identity, error) {
	if w.author != "" {
		a, err := mail.ParseAddress(w.author)
		if err != nil {
			return fleetrepo.Identity{}, &usageError{fmt.Errorf("--author %q: want \"Name <email>\"", w.author)}
		}
		return fleetrepo.Identity{Name: a.Name, Email: a.Address}, nil
	}
	if n := e.getenv("GIT_AUTHOR_NAME"); n != "" {
		return fleetrepo.Identity{Name: n, Email: e.getenv("GIT_AUTHOR_EMAIL")}, nil
	}
	if u := e.getenv("USER"); u != "" {
		return fleetrepo.Identity{Name: u}, nil
	}
	return fleetrepo.Identity{Name: "reconciler-cli"}, nil
}

// openApp opens the fleet as the author and fetches the tip, its specs and
// the app a command writes about.
func (w *writeFlags) openApp(ctx context.Context, e *env, name string) (*fleetHandles, fleetrepo.Identity, plumbing.Hash, spec.App, error) {
	id, err := w.identity(e)
	if err != nil {
		return nil, id, plumbing.ZeroHash, spec.App{}, err
	}
	h, err := w.openAs(ctx, e, id)
	if err != nil {
		return nil, id, plumbing.ZeroHash, spec.App{}, err
	}
	tip, fleet, err := h.tip(ctx)
	if err != nil {
		return nil, id, tip, spec.App{}, err
	}
	app, err := appOf(fleet, name)
	return h, id, tip, app, err
}

// openAs opens the fleet to write as id, signing when asked (--sign).
func (w *writeFlags) openAs(ctx context.Context, e *env, id fleetrepo.Identity) (*fleetHandles, error) {
	signer, err := w.signer(ctx, e, id)
	if err != nil {
		return nil, err
	}
	return openFleetSigned(ctx, e, &w.repoFlags, id.Name, signer)
}

// edit is an app's file at a commit with some fields set, ready to commit.
type edit struct {
	fields   []string          // the fields set, in order ("rollout.strategy")
	path     string            // the file, from the repository root
	src      []byte            // its new content
	old      []byte            // its content at the commit
	siblings map[string][]byte // the other spec files of the directory
}

// editApp sets fields of app in the file that declares it at commit.
func editApp(h *fleetHandles, commit plumbing.Hash, app string, set []fieldValue) (*edit, error) {
	ed := &edit{siblings: map[string][]byte{}}
	err := h.desired.View(func(r *git.Repository) error {
		c, err := r.CommitObject(commit)
		if err != nil {
			return err
		}
		tree, err := c.Tree()
		if err != nil {
			return err
		}
		if ed.path, err = fleetrepo.FindAppFile(tree, app); err != nil {
			return err
		}
		dir := path.Clean(h.flags.dir)
		return tree.Files().ForEach(func(f *object.File) error {
			if path.Dir(f.Name) != dir || !strings.HasSuffix(f.Name, ".cue") {
				return nil
			}
			s, err := f.Contents()
			ed.siblings[f.Name] = []byte(s)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("find %s in %s at %.12s: %w", app, h.url, commit.String(), err)
	}
	ed.old = ed.siblings[ed.path]
	ed.src = ed.old
	for _, fv := range set {
		ed.fields = append(ed.fields, fv.field)
		if ed.src, err = fleetrepo.SetField(ed.src, app, fv.field, fv.value); err != nil {
			return nil, fmt.Errorf("set %s.%s in %s: %w", app, fv.field, ed.path, err)
		}
	}
	ed.siblings[ed.path] = ed.src
	return ed, nil
}

// fieldValue is one field to set, in order.
type fieldValue struct {
	field string
	value any
}

// validate loads the edited specs: a change that does not validate is
// never committed. The errors are printed as file:line:col: message.
func (ed *edit) validate(e *env) (*spec.Fleet, error) {
	fleet, err := spec.LoadFiles(ed.siblings)
	var errs *spec.Errors
	if errors.As(err, &errs) {
		fmt.Fprintln(e.stderr, "reconciler: the change does not validate; nothing was committed:")
		for _, x := range errs.List {
			fmt.Fprintln(e.stderr, x.Error())
		}
		return nil, &exitError{exitFailure, "the change does not validate; nothing was committed: " + specErrorSummary(errs)}
	}
	return fleet, err
}

// patch shows the lines the edit changes, as a unified diff without
// context lines.
func (ed *edit) patch() string {
	var w strings.Builder
	old := strings.Split(string(ed.old), "\n")
	cur := strings.Split(string(ed.src), "\n")
	fmt.Fprintf(&w, "--- %s\n+++ %s\n", ed.path, ed.path)
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case i < len(old) && j < len(cur) && old[i] == cur[j]:
			i, j = i+1, j+1
		case i < len(old) && (j >= len(cur) || !slices.Contains(cur[j:], old[i])):
			fmt.Fprintf(&w, "-%s\n", old[i])
			i++
		default:
			fmt.Fprintf(&w, "+%s\n", cur[j])
			j++
		}
	}
	return w.String()
}
