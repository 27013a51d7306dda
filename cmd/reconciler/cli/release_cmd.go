package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/reconciler"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/signing"
)

func releaseCmd(e *env) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "release",
		Short: "Pack and inspect release artifacts (.tar.gz with release.json)",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			return &usageError{errors.New("release: want a subcommand: pack or inspect")}
		},
	}
	registerOutput(c, &output)
	c.AddCommand(releasePackCmd(e), releaseInspectCmd(e))
	return c
}

func releasePackCmd(e *env) *cobra.Command {
	var app, version, out, output string
	c := &cobra.Command{
		Use:   "pack DIR --app APP --version VERSION -o OUT.tar.gz [--output json]",
		Short: "Pack DIR as a reproducible release artifact",
		Long: `pack writes DIR as a gzip'd tar with release.json at its root (DIR/release.json
if present, with app and version set; see docs/release-manifest.md). The same
tree always gives the same bytes: sorted entries, fixed mtimes and owners,
modes normalised to 0755/0644. Sign the result with 'reconciler sign' or cosign.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if out == "" && output != "" && checkOutput(output) != nil {
				// Before every command had --output FORMAT, --output named
				// the artifact here: keep scripts that say so working.
				fmt.Fprintf(e.stderr, "reconciler: release pack --output %s: --output is now the format; naming the artifact with it is deprecated, use -o or --out\n", output)
				out, output = output, "text"
			}
			if app == "" || version == "" || out == "" {
				return &usageError{errors.New("release pack: --app, --version and -o are required (-o is --out, the artifact)")}
			}
			if err := checkOutput(output); err != nil {
				return &usageError{fmt.Errorf("%w (--output is the format; name the artifact with -o or --out)", err)}
			}
			return runPack(c, e, args[0], app, version, out, output)
		},
	}
	c.Flags().StringVar(&app, "app", "", "the release's `APP` name")
	c.Flags().StringVar(&version, "version", "", "the release's `VERSION`")
	// -o names the artifact here (as it always did); the format is --output.
	c.Flags().StringVarP(&out, "out", "o", "", "write the artifact to `OUT.tar.gz`")
	c.Flags().StringVar(&output, "output", "text", "output format: text, json")
	completeWords(c, "output", outputFormats...)
	return c
}

// packResult is what release pack prints with --output json.
type packResult struct {
	App      string `json:"app"`
	Version  string `json:"version"`
	Artifact string `json:"artifact"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

func runPack(c *cobra.Command, e *env, dir, app, version, out, output string) error {
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
	if output == "json" {
		return writeJSON(e, packResult{App: app, Version: version, Artifact: out, Size: v.Size, SHA256: v.SHA256})
	}
	fmt.Fprintf(e.stdout, "Packed %s %s into %s (%d bytes, sha256 %s)\n", app, version, out, v.Size, v.SHA256)
	return nil
}

type inspectFlags struct {
	keys      []string
	signature string
	sha256    string
	output    string
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
It says how the release switches versions: a process release without listen
sockets is swapped stop-then-start, refusing requests meanwhile.
Without --key nothing is verified and inspect says so. Exit 1 on any failure.`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if len(fl.keys) == 0 && fl.signature != "" {
				return &usageError{errors.New("release inspect: --signature needs --key")}
			}
			if err := checkOutput(fl.output); err != nil {
				return err
			}
			return runInspect(c, e, args[0], fl)
		},
	}
	c.Flags().StringArrayVar(&fl.keys, "key", nil, "trusted public key `PUB` (repeatable)")
	c.Flags().StringVar(&fl.signature, "signature", "", "signature file `SIG` (default ARTIFACT.sig)")
	c.Flags().StringVar(&fl.sha256, "sha256", "", "expected sha256 `HEX` of the artifact")
	registerOutput(c, &fl.output)
	return c
}

// inspectResult is what release inspect prints with --output json.
type inspectResult struct {
	Artifact string `json:"artifact"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	// Key is the trusted key that verified the signature; "" when no key
	// was given (nothing was checked: see SignatureChecked).
	Key              string            `json:"key,omitempty"`
	SignatureChecked bool              `json:"signatureChecked"`
	SHA256Pinned     bool              `json:"sha256Pinned"`
	Swap             string            `json:"swap"`     // hot, stop-then-start, hooks, in-place
	SwapText         string            `json:"swapText"` // the same for people
	Manifest         *release.Manifest `json:"manifest"`
	Entries          []inspectEntry    `json:"entries"`
}

// inspectEntry is one entry of the artifact.
type inspectEntry struct {
	Name string `json:"name"`
	Mode string `json:"mode"` // as ls shows it: -rwxr-xr-x, drwxr-xr-x, Lrwxrwxrwx
	Size int64  `json:"size"`
	Link string `json:"link,omitempty"`
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
	res := inspectResult{Artifact: artifact, Size: v.Size, SHA256: v.SHA256, Key: v.KeyID, SignatureChecked: keys != nil,
		SHA256Pinned: fl.sha256 != "", Swap: reconciler.SwapOf(m.Driver, len(m.Listen)), Manifest: m, Entries: []inspectEntry{}}
	res.SwapText = reconciler.SwapText(res.Swap)
	for _, en := range entries {
		res.Entries = append(res.Entries, inspectEntry{Name: en.Name, Mode: en.Mode.String(), Size: en.Size, Link: en.Link})
	}
	if keys == nil {
		fmt.Fprintln(e.stderr, "warning: signature not checked (no --key given)")
	}
	if fl.output == "json" {
		return writeJSON(e, res)
	}
	printInspect(e.stdout, res, entries)
	return nil
}

func printInspect(w io.Writer, res inspectResult, entries []release.Entry) {
	fmt.Fprintf(w, "release %s, %d bytes, sha256 %s\n", res.Manifest, res.Size, res.SHA256)
	switch {
	case res.Key != "":
		fmt.Fprintf(w, "signature: OK (key %s)\n", res.Key)
	default:
		fmt.Fprintln(w, "signature: NOT CHECKED")
	}
	if res.SHA256Pinned {
		fmt.Fprintln(w, "sha256 pin: OK")
	}
	fmt.Fprintf(w, "swap: %s\n", res.SwapText)
	if res.Swap == reconciler.SwapStopStart {
		fmt.Fprintln(w, "warning: every upgrade of this release stops the old version before the new one listens: requests are refused meanwhile; declare its sockets in release.json \"listen\" for a hot swap")
	}
	data, _ := json.MarshalIndent(res.Manifest, "", "  ")
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
