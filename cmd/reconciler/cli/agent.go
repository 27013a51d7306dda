package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetops/reconciler/internal/logging"
	"github.com/fleetops/reconciler/release"
	"github.com/fleetops/reconciler/spec"
	"github.com/fleetops/reconciler/spec/isolate"
)

// agentOptions are the agent command's flags.
type agentOptions struct {
	repo, branch, dir string
	sharedFlags
	node, stateDir, listen    string
	labels                    map[string]string
	trustKeys, vars           []string
	socketDirs                []string
	poll                      time.Duration
	fetchTimeout, fetchStall  time.Duration
	once                      bool
	logFormat                 string
	output                    string
	coordination              string
	leaseTTL                  time.Duration
	switchAbort               time.Duration
	trustSigners              []string // --trust-signer: who may move the fleet (agent_trust.go)
	requireSigned, signingKey string
	specTimeout               time.Duration // --spec-timeout: bound on evaluating one commit's spec
	specMemoryMiB             int64         // --spec-memory: bound on its memory, in MiB
	notifyFlags                             // --notify...: rollout events out (agent_notify.go)
	webhookFlags                            // --webhook-...: push webhooks in (agent_notify.go)
}

// agentCommands builds agent.
func agentCommands(e *env) []*cobra.Command {
	o := &agentOptions{}
	c := &cobra.Command{
		Use:   "agent --repo URL --node NAME --state-dir DIR --trust-key PUB [flags]",
		Short: "Run the agent on this node: converge it to the fleet repo",
		Long: `agent watches the fleet repo's tracked branch and converges this node to it:
for each app targeting the node it installs the signed release (verified
against the --trust-key keys only), switches to it through the release's
driver (process: hot swap on agent-held sockets; exec: the release's hooks;
otp: release_handler), checks health with the spec's retries and keeps or
restores the previous version on failure. It writes this node's report to
the shared state and serves /healthz and /metrics on --listen.

With --trust-signer it moves only to tips whose commits are signed by a
trusted signer (--require-signed chain, the default, or tip) and keeps the
last accepted tip otherwise; --signing-key signs its rollback commits. See
docs/trust.md.

Workloads keep running when the agent stops (SIGTERM) or dies; a restarted
agent adopts them. See docs/agent.md.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return &usageError{err}
			}
			if c.Flags().Changed("branch") {
				fmt.Fprintln(e.stderr, "warning: --branch is deprecated, use --tracked-branch (as every other command)")
			}
			return runAgent(c.Context(), e, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.repo, "repo", "", "fleet repo URL: a path, file://, http(s)://, ssh:// (required)")
	o.sharedFlags.register(f)
	o.sharedFlags.registerLiveness(f)
	f.StringVar(&o.branch, "tracked-branch", "main", "the branch of the fleet repo to track")
	// --branch is the old name, kept as an alias. Not MarkDeprecated: cobra
	// prints that notice on stdout, which --output json keeps for JSON.
	f.StringVar(&o.branch, "branch", "main", "deprecated alias of --tracked-branch")
	f.StringVar(&o.dir, "dir", "", "directory of the specs in the fleet repo (default: its root)")
	f.StringVar(&o.node, "node", "", "this node's name (required)")
	f.StringToStringVar(&o.labels, "labels", nil, "this node's labels, k=v,...")
	f.StringVar(&o.stateDir, "state-dir", "", "local state, releases and workload logs (required)")
	f.StringArrayVar(&o.trustKeys, "trust-key", nil, "public key trusted to sign releases (repeatable; at least one)")
	f.StringArrayVar(&o.vars, "var", nil, "node variable K=V for ${K} in manifests and health targets (repeatable; wins over the fleet repo's)")
	f.StringArrayVar(&o.socketDirs, "socket-dir", nil, "directory where releases may bind unix sockets by absolute path, besides <state-dir>/sockets (repeatable)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:9180", "address of /healthz and /metrics (\"\": none)")
	f.DurationVar(&o.poll, "poll", 30*time.Second, "re-evaluation period besides watch events")
	f.DurationVar(&o.fetchTimeout, "fetch-timeout", release.DefaultTimeout, "bound on fetching one release (signature and artifact, retries included)")
	f.DurationVar(&o.fetchStall, "fetch-stall", release.DefaultStallTimeout, "abort a download attempt that receives no byte for this long (it is retried)")
	f.BoolVar(&o.once, "once", false, "one pass: exit 0 when converged, 1 otherwise")
	f.StringVar(&o.logFormat, "log-format", "auto", "auto (text on a terminal, JSON otherwise), text or json")
	f.StringVarP(&o.output, "output", "o", "text", "with --once: text, or json to print the node's /healthz body on stdout at the end")
	completeWords(c, "output", outputFormats...)
	completeWords(c, "log-format", "auto", "text", "json")
	f.StringVar(&o.coordination, "coordination", "lease", "lease: upgrade in waves under leases with the fleet; none: switch to the spec's version at once, alone")
	f.DurationVar(&o.leaseTTL, "lease-ttl", 20*time.Second, "how long a lease lives without renewal (renewed every third of it)")
	f.DurationVar(&o.switchAbort, "switch-abort", 0, "how long giving a candidate up takes at most: a switch begins only under a lease valid longer, and is given up when that runs out (default a quarter of --lease-ttl, at most 5s)")
	f.DurationVar(&o.specTimeout, "spec-timeout", isolate.DefaultTimeout, "bound on evaluating the spec of one commit (in a child process); a spec over it is refused like an invalid one")
	f.Int64Var(&o.specMemoryMiB, "spec-memory", isolate.DefaultMemory>>20, "bound on the memory (address space, MiB) evaluating the spec of one commit may take")
	o.registerTrust(f)
	o.notifyFlags.register(f)
	o.webhookFlags.register(f)
	completeWords(c, "coordination", "lease", "none")
	return []*cobra.Command{c, evalSpecCommand(e)}
}

// evalSpecCommand is the child the agent evaluates specs in (spec/isolate):
// hidden, its input and output are the agent's business.
func evalSpecCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:    "__eval-spec",
		Short:  "Evaluate spec files read as JSON on stdin, under the limits given there (used by agent)",
		Hidden: true,
		Args:   exactArgs(0),
		RunE: func(*cobra.Command, []string) error {
			return isolate.Serve(e.stdin, e.stdout)
		},
	}
}

// specLoader is the agent's SpecLoader: this binary's __eval-spec, under
// --spec-timeout and --spec-memory.
func (o *agentOptions) specLoader() isolate.Loader {
	return isolate.Loader{Timeout: o.specTimeout, Memory: o.specMemoryMiB << 20}
}

var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (o *agentOptions) validate() error {
	var errs []error
	for flag, v := range map[string]string{"--repo": o.repo, "--node": o.node, "--state-dir": o.stateDir} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", flag))
		}
	}
	if o.node != "" {
		if err := spec.CheckName("node", o.node); err != nil {
			errs = append(errs, fmt.Errorf("--node: %w", err))
		}
	}
	if len(o.trustKeys) == 0 {
		errs = append(errs, errors.New("--trust-key is required: the agent runs only releases signed by a key it trusts"))
	}
	if _, err := parseVars(o.vars); err != nil {
		errs = append(errs, err)
	}
	if o.coordination != "lease" && o.coordination != "none" {
		errs = append(errs, fmt.Errorf("--coordination %q: want lease or none", o.coordination))
	}
	if o.leaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("--lease-ttl %v: want at least 1s", o.leaseTTL))
	}
	if o.fetchTimeout <= 0 || o.fetchStall <= 0 {
		errs = append(errs, fmt.Errorf("--fetch-timeout %v, --fetch-stall %v: want positive durations", o.fetchTimeout, o.fetchStall))
	}
	if o.switchAbort == 0 {
		o.switchAbort = min(o.leaseTTL/4, 5*time.Second)
	}
	if o.switchAbort < 0 || o.switchAbort+o.leaseTTL/10 >= o.leaseTTL*2/3 {
		errs = append(errs, fmt.Errorf("--switch-abort %v with --lease-ttl %v leaves a lease no validity to switch in: want it below %v (two thirds of the TTL less a tenth); raise --lease-ttl or lower --switch-abort",
			o.switchAbort, o.leaseTTL, o.leaseTTL*2/3-o.leaseTTL/10))
	}
	if o.specTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--spec-timeout %v: want a positive duration", o.specTimeout))
	}
	if o.specMemoryMiB < 64 {
		errs = append(errs, fmt.Errorf("--spec-memory %d: want at least 64 (MiB)", o.specMemoryMiB))
	}
	if o.poll <= 0 {
		errs = append(errs, fmt.Errorf("--poll %v: want a positive duration", o.poll))
	}
	if _, _, err := o.gitURL(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, o.validateTrust(), o.notifyFlags.validate(), o.webhookFlags.validate())
	switch o.logFormat {
	case "auto", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want auto, text or json", o.logFormat))
	}
	switch {
	case checkOutput(o.output) != nil:
		errs = append(errs, fmt.Errorf("--output %q: want text or json", o.output))
	case o.output == "json" && !o.once:
		errs = append(errs, errors.New("--output json prints the node's state once the agent exits: use it with --once (--log-format json makes the logs JSON)"))
	}
	return errors.Join(errs...)
}

func parseVars(kvs []string) (map[string]string, error) {
	vars := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !varName.MatchString(k) {
			return nil, fmt.Errorf("--var %q: want NAME=value, NAME of letters, digits and '_'", kv)
		}
		vars[k] = v
	}
	return vars, nil
}

// newLogger logs text on a terminal and JSON otherwise (package logging:
// one key per line, readable durations).
func newLogger(e *env, format string) *slog.Logger {
	if format == "auto" {
		format = logging.FormatJSON
		if isTerminal(e.stderr) {
			format = logging.FormatText
		}
	}
	return logging.New(e.stderr, format)
}

// isTerminal reports whether w is a terminal (colours, live progress).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
