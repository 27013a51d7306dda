package cli

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Shell completion (cobra's `reconciler completion bash|zsh|fish`): app
// names from the tracked branch, and the fixed words of enumerated flags.

// completeApps completes the first argument with the app names of the
// fleet the command's flags name (its last valid specs).
func completeApps(e *env, f *repoFlags) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return appNames(c.Context(), e, f, prefix), cobra.ShellCompDirectiveNoFileComp
	}
}

// appNames lists the fleet's apps starting with prefix; nothing when the
// fleet cannot be read (completion must never print an error).
func appNames(ctx context.Context, e *env, f *repoFlags, prefix string) []cobra.Completion {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	h, err := openFleet(ctx, e, f, "reconciler-cli")
	if err != nil {
		return nil
	}
	v, err := h.view(ctx)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, name := range slices.Sorted(maps.Keys(v.fleet.Apps)) {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out
}

// completeWords registers fixed completions for a flag of c.
func completeWords(c *cobra.Command, flag string, words ...string) {
	// The flag is registered by the caller; an error here is a programming
	// mistake in the command's constructor, caught by the completion tests.
	if err := c.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp)); err != nil {
		panic("register completion of --" + flag + " on " + c.Name() + ": " + err.Error())
	}
}
