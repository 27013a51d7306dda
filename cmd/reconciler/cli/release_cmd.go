package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/signing"
)

func releaseCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "release",
		Short: "Pack and inspect release artifacts (.tar.gz with release.json)",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			return &usageError{errors.New("release: want a subcommand: pack or inspect")}
		},
	}
	c.AddCommand(releasePackCmd(e), releaseInspectCmd(e))
	return c
}

func releasePackCmd(e *env) *cobra.Command {
	var app, version, out string
	c := &cobra.Command{
		Use:   "pack DIR --app APP --version VERSION -o OUT.tar.gz",
		Short: "Pack DIR as a reproducible release artifact",
		Long: `pack writes DIR as a gzip'd tar with release.json at its root (DIR/release.json
if present, with app and version set; see docs/release-manifest.md). The same
tree always gives the same bytes: sorted entries, fixed mtimes and owners,
modes normalised to 0755/0644. Sign the result with 'reconciler sign' or cosign.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if app == "" || version == "" || out == "" {
				return &usageError{errors.New("release pack: --app, --version and -o are required")}
			}
			return runPack(c, e, args[0], app, version, out)
		},
	}
	c.Flags().StringVar(&app, "app", "", "the release's `APP` name")
	c.Flags().StringVar(&version, "version", "", "the release's `VERSION`")
	c.Flags().StringVarP(&out, "output", "o", "", "write the artifact to `OUT.tar.gz`")
	return c
}

func runPack(c *cobra.Command, e *env, dir, app, version, out string) error {
	err := replaceFile(out, 0o644, func(f *os.File) error {
		return release.Pack(dir, app, version, f)
	})
	if err != nil {
		return err
	}
	v, err := release.Verify(c.Context(), out, nil, nil, "", 0)
	if err != nil {
		return fmt.Errorf("release pack: %w", err)
	}
	fmt.Fprintf(e.stdout, "Packed %s %s into %s (%d bytes, sha256 %s)\n", app, version, out, v.Size, v.SHA256)
	return nil
}

type inspectFlags struct {
	keys      []string
	signature string
	sha256    string
}

func releaseInspectCmd(e *env) *cobra.Command {
	var fl inspectFlags
	c := &cobra.Command{
		Use:   "inspect ARTIFACT [--key PUB... [--signature SIG]] [--sha256 HEX]",
		Short: "Verify a release artifact, then list its manifest and entries",
		Long: `inspect checks ARTIFACT's signature against the --key public keys (the
signature is --signature, by default ARTIFACT.sig) and its --sha256 pin, then
lists release.json and every entry, refusing unsafe ones (.. or absolute paths,
links out of the release, devices, fifos, bombs) as 'reconciler agent' would.
Without --key nothing is verified and inspect says so. Exit 1 on any failure.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if len(fl.keys) == 0 && fl.signature != "" {
				return &usageError{errors.New("release inspect: --signature needs --key")}
			}
			return runInspect(c, e, args[0], fl)
		},
	}
	c.Flags().StringArrayVar(&fl.keys, "key", nil, "trusted public key `PUB` (repeatable)")
	c.Flags().StringVar(&fl.signature, "signature", "", "signature file `SIG` (default ARTIFACT.sig)")
	c.Flags().StringVar(&fl.sha256, "sha256", "", "expected sha256 `HEX` of the artifact")
	return c
}

func runInspect(c *cobra.Command, e *env, artifact string, fl inspectFlags) error {
	var keys *signing.KeySet
	var sig []byte
	if len(fl.keys) > 0 {
		if fl.signature == "" {
			fl.signature = artifact + ".sig"
		}
		var err error
		if keys, sig, err = loadVerifyInputs(fl.keys, fl.signature); err != nil {
			return fmt.Errorf("inspect %s: %w", artifact, err)
		}
	}
	v, err := release.Verify(c.Context(), artifact, keys, sig, fl.sha256, 0)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", artifact, err)
	}
	m, entries, err := release.Inspect(c.Context(), artifact, release.Limits{})
	if err != nil {
		return err
	}
	printInspect(e.stdout, v, fl, m, entries)
	if keys == nil {
		fmt.Fprintln(e.stderr, "warning: signature not checked (no --key given)")
	}
	return nil
}

func printInspect(w io.Writer, v *release.Verified, fl inspectFlags, m *release.Manifest, entries []release.Entry) {
	fmt.Fprintf(w, "release %s, %d bytes, sha256 %s\n", m, v.Size, v.SHA256)
	switch {
	case v.KeyID != "":
		fmt.Fprintf(w, "signature: OK (key %s)\n", v.KeyID)
	default:
		fmt.Fprintln(w, "signature: NOT CHECKED")
	}
	if fl.sha256 != "" {
		fmt.Fprintln(w, "sha256 pin: OK")
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	fmt.Fprintf(w, "manifest:\n%s\nentries:\n", data)
	for _, en := range entries {
		name := en.Name
		switch {
		case en.Mode&fs.ModeSymlink != 0:
			name += " -> " + en.Link
		case en.Mode.IsDir():
			name += "/"
		case en.Link != "":
			name += " => " + en.Link
		}
		fmt.Fprintf(w, "  %v %10d  %s\n", en.Mode, en.Size, name)
	}
}
