package cli

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/trust"
)

// registerTrust adds the agent's commit-signature flags (docs/trust.md).
func (o *agentOptions) registerTrust(f *pflag.FlagSet) {
	f.StringArrayVar(&o.trustSigners, "trust-signer", nil,
		"file of signers trusted to move the fleet: OpenPGP armored public keys, SSH public keys or an allowed_signers file (repeatable)")
	f.StringVar(&o.requireSigned, "require-signed", "",
		"with --trust-signer: chain (every first-parent commit since the last accepted tip; the default) or tip (the new tip alone)")
	f.StringVar(&o.signingKey, "signing-key", "",
		"private key (OpenSSH or OpenPGP armored) this node signs its rollback commits with; password in RECONCILER_PASSWORD")
}

func (o *agentOptions) validateTrust() error {
	if o.requireSigned == "" {
		return nil
	}
	if len(o.trustSigners) == 0 {
		return errors.New("--require-signed needs --trust-signer: the signers whose commits the agent accepts")
	}
	_, err := trust.ParseMode(o.requireSigned)
	return err
}

// trustOptions are what the agent's Desired handle verifies and signs with.
type trustOptions struct {
	verifier fleetrepo.TipVerifier // nil: no signature policy
	signer   fleetrepo.CommitSigner
}

// agentTrust loads the trusted signers and the signing key.
func agentTrust(e *env, o *agentOptions, log *slog.Logger) (trustOptions, error) {
	var tr trustOptions
	if o.signingKey != "" {
		k, err := e.loadSigningKey(o.signingKey)
		if err != nil {
			return tr, fmt.Errorf("agent %s: --signing-key: %w", o.node, err)
		}
		tr.signer = k
		log.Info("signing rollback commits", "key", k.ID())
	}
	if len(o.trustSigners) == 0 {
		return tr, nil
	}
	signers, err := trust.LoadSigners(o.trustSigners...)
	if err != nil {
		return tr, fmt.Errorf("agent %s: --trust-signer: %w", o.node, err)
	}
	mode := trust.Chain
	if o.requireSigned != "" {
		mode = trust.Mode(o.requireSigned) // checked by validate
	}
	tr.verifier = &trust.Policy{Signers: signers, Mode: mode, SpecDir: o.dir}
	var names []string
	for _, s := range signers.List() {
		names = append(names, s.Name+" ("+string(s.Role)+")")
	}
	log.Info("accepting only signed tips", "require-signed", string(mode), "signers", names)
	if tr.signer == nil {
		log.Warn("no --signing-key: this agent's rollback commits are unsigned, and agents that require signatures (this one too) refuse them")
	}
	return tr, nil
}
