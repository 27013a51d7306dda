package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/agent/rollout"
	"github.com/fleetops/reconciler/internal/notify"
	"github.com/fleetops/reconciler/internal/webhook"
	"github.com/fleetops/reconciler/reconciler"
)

// notifyFlags are the agent's notification flags (docs/notifications.md):
// where the fleet's rollout events go, signed with a key that only this
// node's configuration holds.
type notifyFlags struct {
	notify           []string
	notifySecretFile string
	notifyFormat     string
	notifyBackoff    time.Duration
}

func (n *notifyFlags) register(f *pflag.FlagSet) {
	f.StringArrayVar(&n.notify, "notify", nil, "URL to POST rollout events to, as CloudEvents (repeatable); sent once per fleet, by the agent that recorded each event")
	f.StringVar(&n.notifySecretFile, "notify-secret-file", "", "file of the key that signs each notification (header X-Reconciler-Signature: sha256=<hex HMAC-SHA256 of the body>)")
	f.DurationVar(&n.notifyBackoff, "notify-max-backoff", time.Minute, "cap on the wait between tries of a target that does not answer 2xx (from 1s, doubling)")
	f.StringVar(&n.notifyFormat, "notify-format", notify.FormatCloudEvents, "cloudevents (structured JSON), or slack ({\"text\": ...} for a Slack-compatible incoming webhook)")
}

func (n *notifyFlags) validate() error {
	var errs []error
	for _, u := range n.notify {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Errorf("--notify %q: want an http:// or https:// URL", redactTarget(u)))
		}
	}
	if n.notifyFormat != notify.FormatCloudEvents && n.notifyFormat != notify.FormatSlack {
		errs = append(errs, fmt.Errorf("--notify-format %q: want cloudevents or slack", n.notifyFormat))
	}
	if n.notifyBackoff < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("--notify-max-backoff %v: want at least 10ms", n.notifyBackoff))
	}
	if n.notifySecretFile != "" && len(n.notify) == 0 {
		errs = append(errs, errors.New("--notify-secret-file needs --notify: the targets it signs for"))
	}
	return errors.Join(errs...)
}

// redactTarget keeps an incoming-webhook URL's token out of messages.
func redactTarget(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Scheme + "://" + p.Host + "/…"
	}
	return "(unparsable URL)"
}

// readSecret reads a key file: its bytes without the trailing newline.
func readSecret(flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return nil, fmt.Errorf("%s %s: the file is empty: want the shared secret", flag, path)
	}
	return []byte(s), nil
}

// startNotify opens the outbox in the state dir and starts delivering it;
// it returns the shared state the coordinator appends through (so that
// each event this agent records is queued) and the stop of the delivery.
// Without --notify it returns shared as is and a nil outbox.
func startNotify(ctx context.Context, o *agentOptions, shared sharedState, log *slog.Logger) (sharedState, *notify.Outbox, func(), error) {
	if len(o.notify) == 0 {
		return shared, nil, func() {}, nil
	}
	var secret []byte
	if o.notifySecretFile != "" {
		var err error
		if secret, err = readSecret("--notify-secret-file", o.notifySecretFile); err != nil {
			return nil, nil, nil, fmt.Errorf("agent %s: %w", o.node, err)
		}
	}
	var targets []notify.Target
	for _, u := range o.notify {
		targets = append(targets, notify.Target{URL: u, Format: o.notifyFormat})
	}
	ob, err := notify.Open(notify.Options{Dir: filepath.Join(o.stateDir, "notify"), Fleet: o.repo,
		Targets: targets, Secret: secret, MaxBackoff: o.notifyBackoff, Logger: log.With("component", "notify")})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("agent %s: %w", o.node, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { ob.Run(ctx, shared) })
	log.Info("notifications on", "targets", len(targets), "format", o.notifyFormat, "signed", secret != nil)
	return notifying{sharedState: shared, rec: &notify.Recorder{Outbox: ob, Logger: log}}, ob,
		func() { cancel(); wg.Wait() }, nil
}

// notifyPendingGauge counts the events waiting in the outbox, over every
// target: it grows while a receiver is down.
func notifyPendingGauge(ob *notify.Outbox) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "reconciler_notifications_pending",
		Help: "Rollout events queued for --notify targets and not yet delivered.",
	}, func() float64 {
		n := 0
		for _, c := range ob.Pending() {
			n += c
		}
		return float64(n)
	})
}

// notifying is the shared state with each appended event's notifications
// queued in the outbox.
type notifying struct {
	sharedState
	rec *notify.Recorder
}

func (n notifying) Append(ctx context.Context, app string, decide notify.Decide) error {
	return n.rec.Append(ctx, n.sharedState, app, decide)
}

func (n notifying) AppendGuarded(ctx context.Context, app string, guard []reconciler.Lease, decide notify.Decide) error {
	return n.rec.AppendGuarded(ctx, n.sharedState, app, guard, decide)
}

// PushesChanges keeps the store's rollout.Pusher (etcd) visible.
func (n notifying) PushesChanges() bool {
	p, ok := n.sharedState.(rollout.Pusher)
	return ok && p.PushesChanges()
}

// webhookFlags are the agent's push webhook flags (docs/agent.md).
type webhookFlags struct {
	webhookListen, webhookSecretFile string
}

func (w *webhookFlags) register(f *pflag.FlagSet) {
	f.StringVar(&w.webhookListen, "webhook-listen", "", "address to receive push webhooks from GitHub, GitLab, Gitea or Bitbucket on (host:port; \"\": none): a push to the tracked branch wakes the agent at once")
	f.StringVar(&w.webhookSecretFile, "webhook-secret-file", "", "file of the webhooks' secret (HMAC key, or GitLab's secret token); required with --webhook-listen")
}

func (w *webhookFlags) validate() error {
	switch {
	case w.webhookListen != "" && w.webhookSecretFile == "":
		return errors.New("--webhook-listen needs --webhook-secret-file: an unauthenticated hook would let anyone make the agent fetch")
	case w.webhookListen == "" && w.webhookSecretFile != "":
		return errors.New("--webhook-secret-file needs --webhook-listen")
	}
	return nil
}

// webhookWakers opens the push webhook receiver when --webhook-listen is set.
func webhookWakers(o *agentOptions, log *slog.Logger) ([]agent.Watcher, error) {
	if o.webhookListen == "" {
		return nil, nil
	}
	secret, err := readSecret("--webhook-secret-file", o.webhookSecretFile)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", o.node, err)
	}
	r, err := webhook.New(webhook.Options{Listen: o.webhookListen, Secret: secret, Branch: o.branch,
		Logger: log.With("component", "webhook")})
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", o.node, err)
	}
	log.Info("push webhooks on", "addr", r.Addr(), "branch", o.branch)
	return []agent.Watcher{r}, nil
}
