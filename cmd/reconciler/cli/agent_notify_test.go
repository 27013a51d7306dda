package cli

import (
	"strings"
	"testing"
)

// TestAgentNotifyAndWebhookFlags: bad --notify URLs and formats, a secret
// file without its flag, and --webhook-listen without a secret are usage
// errors that say what to give; a Slack URL's token stays out of them.
func TestAgentNotifyAndWebhookFlags(t *testing.T) {
	for _, tc := range []struct {
		flags notifyFlags
		hooks webhookFlags
		want  string // "" valid
	}{
		{flags: notifyFlags{notify: []string{"https://hooks.example.com/services/T/B/SECRET"}, notifyFormat: "slack", notifyBackoff: 1e9}},
		{flags: notifyFlags{notify: []string{"ftp://x/SECRET"}, notifyFormat: "cloudevents", notifyBackoff: 1e9}, want: "want an http:// or https:// URL"},
		{flags: notifyFlags{notifyFormat: "teams", notifyBackoff: 1e9}, want: `--notify-format "teams"`},
		{flags: notifyFlags{notifySecretFile: "k", notifyFormat: "cloudevents", notifyBackoff: 1e9}, want: "--notify-secret-file needs --notify"},
		{flags: notifyFlags{notifyFormat: "cloudevents", notifyBackoff: 1}, want: "--notify-max-backoff"},
		{flags: notifyFlags{notifyFormat: "cloudevents", notifyBackoff: 1e9}, hooks: webhookFlags{webhookListen: ":9190"}, want: "--webhook-listen needs --webhook-secret-file"},
		{flags: notifyFlags{notifyFormat: "cloudevents", notifyBackoff: 1e9}, hooks: webhookFlags{webhookSecretFile: "k"}, want: "--webhook-secret-file needs --webhook-listen"},
	} {
		err := tc.flags.validate()
		if herr := tc.hooks.validate(); err == nil {
			err = herr
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v %+v: %v", tc.flags, tc.hooks, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v %+v: %v, want %q", tc.flags, tc.hooks, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "SECRET"):
			t.Errorf("the error shows the URL's token: %v", err)
		}
	}
}
