package e2e

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/fleetlab"
	"github.com/fleetops/reconciler/reconciler"
)

// update writes the dashboard tests' screenshots into docs/ too.
var update = flag.Bool("update", false, "write the ui screenshots into docs/ (docs/ui-*.png)")

// TestUI drives `reconciler ui` in a real headless Chromium, through a
// reverse proxy that serves it under /fleet/ (stripping the prefix and
// sending X-Forwarded-Prefix), against a real 3-agent fleet: the matrix
// shows every node's version; a rolling upgrade moves wave by wave on the
// page without a reload; a failed canary shows its reason; the history
// lists the upgrade and the rollback; a hostile report renders as text.
func TestUI(t *testing.T) {
	f := newFleet(t, 3)
	ui := startUI(t, f.url)
	proxy := prefixProxy(t, "/fleet", ui)
	b := newBrowser(t)

	b.do(chromedp.Navigate(proxy + "/fleet/"))
	b.poll(`document.querySelectorAll('#matrix td.cell[data-app="web"][data-version="1.0.0"][data-state="healthy"]').length === 3`,
		20*time.Second, "the matrix shows node-1..3 on web 1.0.0, healthy")
	for _, n := range f.nodes {
		b.poll(fmt.Sprintf(`!!document.querySelector('#matrix tr[data-node=%q] a[href="#/node/%s"]')`, n, n), time.Second, "a row links to "+n)
	}
	b.expect(`document.querySelector('.readonly').textContent`, "read-only view")
	b.screenshot("ui-matrix.png")

	// The rolling upgrade: a sampler in the page records each distinct
	// state of the waves every 50ms, and whether the countdown to the next
	// wave and the estimate showed; the marker proves no reload.
	b.do(chromedp.Evaluate[chromedp.Void](`window.__sameLoad = true; location.hash = "#/rollouts";
		window.__seen = []; window.__countdown = ""; window.__estimate = "";
		setInterval(() => {
			const card = document.querySelector('section[data-app="web"]');
			if (!card) return;
			const w = [...card.querySelectorAll('.wave')].map((x) => x.querySelector('.node[data-state="upgraded"]') ? "u" : "-").join("");
			if (w && window.__seen[window.__seen.length - 1] !== w) window.__seen.push(w);
			const c = card.querySelector('[data-role="countdown"]');
			if (c) window.__countdown = c.textContent;
			const m = card.querySelector('.meta').textContent;
			if (m.includes(" left")) window.__estimate = m;
		}, 50)`))
	f.push(specOptions{version: "1.1.0", rollout: `strategy: "rolling", batchSize: 1, batchDelay: "3s"`}, "web 1.1.0")
	b.poll(`(window.__seen || []).includes("u--")`, 30*time.Second, "wave 1 upgraded, waves 2 and 3 not yet")
	b.screenshot("ui-rollout.png")
	b.poll(`window.__seen.includes("uuu") && document.querySelector('section[data-app="web"]').dataset.state === "complete"`,
		60*time.Second, "every wave upgraded and the rollout complete")
	b.expect(`window.__seen.filter((s) => ["u--", "uu-", "uuu"].includes(s)).join(" ")`, "u-- uu- uuu")
	b.expect(`/^wave [23] opens in \d+s$/.test(window.__countdown)`, "true")
	b.expect(`/elapsed \d+s · about \d+s left/.test(window.__estimate)`, "true")
	b.expect(`String(window.__sameLoad)`, "true")
	b.expect(`document.querySelector('section[data-app="web"] .progress').dataset.done`, "3")

	// A broken version fails on the canary: the page shows why.
	bad := f.push(specOptions{version: "1.2.0", rollout: `strategy: "canary", batchSize: 2, canary: {count: 1, monitor: "3s"}`}, "web 1.2.0")
	f.eventually(90*time.Second, func() (bool, string) {
		r := reconciler.Latest(f.record("web"))
		if r == nil || r.ID != bad || r.Reason == "" {
			return false, fmt.Sprintf("latest rollout %+v", r)
		}
		shown, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](
			`(document.querySelector('section[data-app="web"] [data-role="reason"]') || {}).textContent || ""`))
		if err != nil || shown != r.Reason {
			return false, fmt.Sprintf("the page shows reason %q (%v), the record says %q", shown, err, r.Reason)
		}
		return true, ""
	}, "the canary's failure reason on the page, as in the rollout record")
	b.expect(`String(window.__sameLoad)`, "true")

	// History: the upgrade, completed; the rollback with its reason.
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/history"`))
	b.poll(`[...document.querySelectorAll('#history tr[data-kind="rollback"] td[data-role="reason"]')].some((td) => td.textContent !== "")`,
		60*time.Second, "the rollback commit, with its reason")
	b.poll(`[...document.querySelectorAll('#history tr[data-kind="upgrade"]')].some((tr) => tr.textContent.includes("1.0.0 → 1.1.0") && tr.textContent.includes("complete"))`,
		10*time.Second, "the upgrade to 1.1.0, complete")
	b.screenshot("ui-history.png")

	// A report is data: markup in it renders as text and never runs.
	hostile := `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">`
	writeReport(t, f.url, reconciler.NodeReport{Node: "intruder", Time: time.Now(), Labels: map[string]string{"tier": hostile},
		Apps: map[string]reconciler.AppReport{"web": {Version: "<b>9</b>", State: reconciler.AppFailed, Error: hostile}}})
	// A lease taken (by the intruder: no agent renews it) shows its holder.
	takeLease(t, f.url, "web", 0, "intruder", bad)
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/rollouts"`))
	b.poll(`(document.querySelector('section[data-app="web"] [data-role="leases"]') || {textContent: ""}).textContent.includes("slot 0: intruder (held")`,
		10*time.Second, "the lease holder of slot 0")

	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/"`))
	b.poll(`(document.querySelector('#matrix td.cell[data-node="intruder"] .err') || {}).textContent === `+fmt.Sprintf("%q", hostile),
		20*time.Second, "the hostile error shown as text in the matrix")
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/node/intruder"`))
	b.poll(`[...document.querySelectorAll('#node-errors li')].some((li) => li.textContent === "web: " + `+fmt.Sprintf("%q", hostile)+`)`,
		5*time.Second, "the hostile error shown as text on the node's page")
	b.expect(`String(typeof window.__pwned) + " " + document.querySelectorAll('#view img, #view script, #view b').length`, "undefined 0")
	b.screenshot("ui-node.png")

	// The label filter: the hostile label is an option, shown as text;
	// tier=web leaves the three real nodes.
	b.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#/"`))
	b.poll(`[...document.querySelectorAll('#label-filter option')].some((o) => o.textContent === "tier=" + `+fmt.Sprintf("%q", hostile)+`)`,
		5*time.Second, "the hostile label as a filter option")
	b.do(chromedp.Evaluate[chromedp.Void](`const s = document.getElementById("label-filter"); s.value = "tier=web"; s.dispatchEvent(new Event("change"))`))
	b.poll(`[...document.querySelectorAll('#matrix tbody tr')].map((tr) => tr.dataset.node).join(" ") === "node-1 node-2 node-3"`,
		5*time.Second, "only the nodes labelled tier=web")
}

// TestUIErrorBanner: a --repo that does not exist, and a shared-state store
// that does not answer, are a banner naming them, not a blank page.
func TestUIErrorBanner(t *testing.T) {
	b := newBrowser(t)
	ui := startUI(t, "file://"+filepath.Join(t.TempDir(), "no-such-fleet.git"))
	b.do(chromedp.Navigate(ui + "/"))
	b.poll(`!document.getElementById("banner").hidden && document.getElementById("banner").textContent.includes("no-such-fleet.git")`,
		20*time.Second, "the error banner naming the repository")
	b.expect(`document.getElementById("banner").textContent.startsWith("Cannot read the fleet: ")`, "true")
	b.screenshot("ui-error.png")

	port, err := fleetlab.FreePort() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	repo := gittest.NewBare(t, map[string]string{"fleet.cue": fmt.Sprintf(`package fleet
apps: web: {
	version: "1.0.0"
	artifact: url: "file://%s/web-\(version).tar.gz"
	health: tcp: "127.0.0.1:${PORT}"
}
`, lab.Releases)})
	etcd := fmt.Sprintf("etcd://127.0.0.1:%d", port)
	ui = startUI(t, repo, "--shared", etcd)
	b.do(chromedp.Navigate(ui + "/"))
	b.poll(fmt.Sprintf(`document.getElementById("banner").textContent.startsWith("Cannot read the fleet: ") && document.getElementById("banner").textContent.includes(%q)`, etcd),
		30*time.Second, "the error banner naming the unreachable etcd")
}

// startUI runs `reconciler ui` against repo and returns its URL once it
// answers.
func startUI(t *testing.T, repo string, flags ...string) string {
	t.Helper()
	port, err := fleetlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	log, err := os.Create(filepath.Join(t.TempDir(), "ui.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(lab.Reconciler, append([]string{"ui", "--listen", addr, "--repo", repo}, flags...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("reconciler ui did not stop cleanly: %v", err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("reconciler ui log:\n%s", b)
		}
		log.Close()
	})
	u := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(u + "/api/snapshot")
		if err == nil {
			resp.Body.Close()
			return u
		}
		if time.Now().After(deadline) {
			t.Fatalf("reconciler ui does not answer on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// prefixProxy serves target under prefix as a reverse proxy that strips
// the prefix would (nginx location /fleet/ { proxy_pass ...; }), sending
// it in X-Forwarded-Prefix, and returns the proxy's URL.
func prefixProxy(t *testing.T, prefix, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.URL.Path = strings.TrimPrefix(r.In.URL.Path, prefix)
			r.Out.Header.Set("X-Forwarded-Prefix", prefix)
		},
		FlushInterval: -1, // server-sent events pass at once
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, prefix+"/") {
			http.NotFound(w, r) // only the prefix is proxied: a page that escapes it breaks
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// writeReport writes a node report into the fleet's shared state, as a
// node's agent would (here: a hostile one).
func writeReport(t *testing.T, repo string, r reconciler.NodeReport) {
	t.Helper()
	ctx := context.Background()
	sh, err := fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: repo, Identity: fleetrepo.Identity{Name: r.Node}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.WriteReport(ctx, r); err != nil {
		t.Fatal(err)
	}
}

// takeLease takes slot of app's leases for holder, as an agent would.
func takeLease(t *testing.T, repo, app string, slot int, holder, rollout string) {
	t.Helper()
	ctx := context.Background()
	sh, err := fleetrepo.OpenShared(ctx, fleetrepo.SharedOptions{URL: repo, Identity: fleetrepo.Identity{Name: holder}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Acquire(ctx, app, slot, holder, rollout, time.Minute); err != nil {
		t.Fatalf("take lease %s/%d: %v", app, slot, err)
	}
}

// browser is one headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// newBrowser starts Debian's chromium (the .ci/deps script installs it),
// headless and without its sandbox (CI runs as root).
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the ui tests need chromium (Debian package chromium; .ci/deps installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1100, 640), chromedp.Flag("hide-scrollbars", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	b.do(chromedp.EmulateViewport(1100, 640))
	return b
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

// poll waits until the JavaScript expression is truthy, within d.
func (b *browser) poll(expr string, d time.Duration, what string) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(d))); err != nil {
		view, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`))
		b.t.Fatalf("waiting %s for %s: %v\npage:\n%s", d, what, err, view)
	}
}

// expect checks the expression's value (as a string) now.
func (b *browser) expect(expr, want string) {
	b.t.Helper()
	got, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`String(`+expr+`)`))
	if err != nil {
		b.t.Fatal(err)
	}
	if got != want {
		b.t.Fatalf("%s = %q, want %q", expr, got, want)
	}
}

// screenshot writes the view under the test's temp dir and, with -update,
// into docs/.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatal(err)
	}
	dirs := []string{b.t.TempDir()}
	if *update {
		dirs = append(dirs, filepath.Join("..", "docs"))
	}
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, name), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.t.Logf("screenshot %s (%d bytes) in %s", name, len(png), strings.Join(dirs, ", "))
}
