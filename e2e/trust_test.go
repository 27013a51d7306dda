package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/fleetops/reconciler/agent"
	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/internal/fleetlab"
)

// signedFleet is a fleet whose agents accept only signed tips: Ada signs
// with an SSH key through `git commit -S`, Bob with an OpenPGP key through
// `reconciler upgrade --signing-key`, and each node signs its rollback
// commits with its own SSH key, trusted with the agent role.
type signedFleet struct {
	*fleet
	dir      string
	adaKey   string            // Ada's private SSH key (ssh-keygen)
	bobKey   string            // Bob's armored OpenPGP private key
	nodeKeys map[string]string // node -> private SSH key
	people   string            // Ada's allowed_signers file
	nodes    string            // the nodes' allowed_signers file
}

func newSignedFleet(t *testing.T, n int) *signedFleet {
	t.Helper()
	s := &signedFleet{fleet: &fleet{t: t, lab: lab.Fleet(t.TempDir())}, dir: t.TempDir(), nodeKeys: map[string]string{}}
	var adaPub string
	s.adaKey, adaPub = sshKeygen(t, s.dir, "ada")
	s.people = s.write("people.allowed_signers", "ada@example.com "+adaPub+"\n")
	s.bobKey = s.pgpKey("Bob <bob@example.com>")
	var nodes strings.Builder
	nodes.WriteString("# reconciler-role: agent\n")
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("node-%d", i)
		s.fleet.nodes = append(s.fleet.nodes, name)
		key, pub := sshKeygen(t, s.dir, name)
		s.nodeKeys[name] = key
		fmt.Fprintf(&nodes, "%s %s\n", name, pub)
	}
	s.nodes = s.write("nodes.allowed_signers", nodes.String())
	s.bare = gittest.NewBare(t, map[string]string{"README.md": "fleet\n"}) // unsigned history before signing
	s.url = gittest.Serve(t, s.bare)
	s.pushSigned(specOptions{version: "1.0.0", rollout: `strategy: "all_at_once"`}, "web 1.0.0, signed")
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpLogs()
		}
		_ = s.lab.Close()
	})
	for _, name := range s.fleet.nodes {
		a, err := s.lab.StartAgent(name, s.url, "--poll", "1s", "--lease-ttl", "3s",
			"--trust-signer", s.people, "--trust-signer", s.bobKey+".pub", "--trust-signer", s.nodes,
			"--signing-key", s.nodeKeys[name])
		if err != nil {
			t.Fatal(err)
		}
		s.agents = append(s.agents, a)
	}
	s.waitAll("1.0.0", 90*time.Second)
	return s
}

func (s *signedFleet) write(name, content string) string {
	s.t.Helper()
	p := filepath.Join(s.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func sshKeygen(t *testing.T, dir, name string) (key, pub string) {
	t.Helper()
	key = filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	b, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return key, strings.TrimSpace(string(b))
}

// pgpKey makes an OpenPGP key with Go's openpgp packages: the armored
// private key at the returned path, its public key at path+".pub".
func (s *signedFleet) pgpKey(uid string) string {
	s.t.Helper()
	name, email, _ := strings.Cut(strings.TrimSuffix(uid, ">"), " <")
	e, err := openpgp.NewEntity(name, "", email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		s.t.Fatal(err)
	}
	path := filepath.Join(s.dir, strings.ToLower(name)+".asc")
	s.write(filepath.Base(path), armorEntity(s.t, e, true))
	s.write(filepath.Base(path)+".pub", armorEntity(s.t, e, false))
	return path
}

func armorEntity(t testing.TB, e *openpgp.Entity, private bool) string {
	t.Helper()
	var buf bytes.Buffer
	typ, ser := openpgp.PublicKeyType, func(w io.Writer) error { return e.Serialize(w) }
	if private {
		typ, ser = openpgp.PrivateKeyType, func(w io.Writer) error { return e.SerializePrivate(w, nil) }
	}
	w, err := armor.Encode(&buf, typ, nil)
	if err == nil {
		err = ser(w)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.String() + "\n"
}

// pushSigned commits the spec as Ada with `git commit -S` (gpg.format ssh)
// and pushes it; it returns the commit.
func (s *signedFleet) pushSigned(o specOptions, msg string) string {
	s.t.Helper()
	work := gittest.Clone(s.t, s.url, "main")
	for name, content := range s.spec(o) {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	gittest.Git(s.t, work, "add", "-A")
	gittest.Git(s.t, work, "-c", "gpg.format=ssh", "-c", "user.signingkey="+s.adaKey, "commit", "-q", "-S", "-m", msg)
	gittest.Git(s.t, work, "push", "-q", "origin", "HEAD:refs/heads/main")
	return gittest.Git(s.t, work, "rev-parse", "HEAD")
}

// allRefuse waits until every node reports the tip as untrusted with want
// in its reason, and /healthz says degraded.
func (s *signedFleet) allRefuse(commit, want string) {
	s.t.Helper()
	s.eventually(30*time.Second, func() (bool, string) {
		for _, a := range s.agents {
			h, err := healthz(a)
			if err != nil {
				return false, err.Error()
			}
			u := h.Report.Untrusted
			if !strings.HasPrefix(u, "untrusted: "+commit+": ") || !strings.Contains(u, want) || h.Status != "degraded" {
				return false, fmt.Sprintf("%s: status %s, untrusted %q", a.Name, h.Status, u)
			}
		}
		return true, ""
	}, "every node to refuse "+commit)
}

func healthz(a *fleetlab.Agent) (agent.Healthz, error) {
	var h agent.Healthz
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + a.Healthz + "/healthz")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

// holds checks, for a while, that every node keeps serving v.
func (s *signedFleet) holds(v string, d time.Duration) {
	s.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		for _, a := range s.agents {
			if ok, why := runs(a, v); !ok {
				s.t.Fatalf("a node moved off %s: %s", v, why)
			}
		}
	}
}

// TestSignedFleet: signed upgrades converge; an unsigned commit on top is
// refused by every node (nothing switches, each says why); a broken
// canary is rolled back by an agent-signed commit the other agents accept;
// an agent-signed version bump is refused.
func TestSignedFleet(t *testing.T) {
	s := newSignedFleet(t, 3)

	// Bob's OpenPGP-signed upgrade, through the CLI.
	if _, err := s.cli("upgrade", "web", "1.1.0", "--strategy", "rolling", "--batch-size", "2", "--push", "--signing-key", s.bobKey); err != nil {
		t.Fatal(err)
	}
	s.waitAll("1.1.0", 2*time.Minute)
	signed := gittest.RevParse(t, s.bare, "main")

	// An unsigned commit on top: refused everywhere, nothing switches.
	unsigned := s.push(specOptions{version: "1.0.0", rollout: `strategy: "all_at_once"`}, "unsigned: back to 1.0.0")
	s.allRefuse(unsigned, "unsigned commit")
	s.holds("1.1.0", 3*time.Second)
	out, err := s.cli("status", "web")
	if err != nil || !strings.Contains(out, "node-2 refuses the tip: untrusted: "+unsigned+": unsigned commit") {
		t.Fatalf("status does not show the refusal: %v\n%s", err, out)
	}
	if m := metrics(t, s.agents[0]); !strings.Contains(m, "reconciler_tip_untrusted 1") ||
		!strings.Contains(m, `reconciler_tip_info{commit="`+signed+`"} 1`) {
		t.Fatalf("metrics:\n%s", m)
	}

	// The operator resets main to the signed tip; Ada pushes a broken canary.
	gittest.ForcePush(t, s.bare, "main", signed)
	bad := s.pushSigned(specOptions{version: "1.2.0",
		rollout: `strategy: "canary", batchSize: 2, canary: {count: 1, monitor: "3s"}`}, "web 1.2.0 canary")
	var rollback string
	s.eventually(2*time.Minute, func() (bool, string) {
		msg, err := fleetlab.Git(s.bare, "log", "-1", "--format=%H%n%B", "main")
		if err != nil || !strings.Contains(msg, "Reconciler-Rollback-Of: "+bad) {
			return false, "no rollback commit yet: " + msg
		}
		rollback = strings.SplitN(msg, "\n", 2)[0]
		return true, ""
	}, "the rollback commit")
	if _, err := gittest.RunGit(s.bare, "-c", "gpg.ssh.allowedSignersFile="+s.nodes, "verify-commit", rollback); err != nil {
		t.Fatalf("the rollback commit is not signed by a node key: %v", err)
	}
	s.waitAll("1.1.0", time.Minute) // every node accepted the agent-signed rollback
	for _, a := range s.agents {
		if h, err := healthz(a); err != nil || h.Report.Untrusted != "" || h.Tip.Accepted != rollback || h.Status != "ok" {
			t.Fatalf("%s after the rollback: %+v, %v", a.Name, h.Tip, err)
		}
	}

	// A node's key signing a version bump: refused by every node.
	if _, err := s.cli("upgrade", "web", "1.0.0", "--push", "--signing-key", s.nodeKeys["node-1"]); err != nil {
		t.Fatal(err)
	}
	bump := gittest.RevParse(t, s.bare, "main")
	s.allRefuse(bump, "an agent key may sign only rollbacks and pauses: signed by node-1 (agent")
	s.holds("1.1.0", 3*time.Second)

	// verify-commits, as CI would run it, accepts the canary and the
	// rollback and names the bump.
	out, err = s.cli("verify-commits", signed+"..main", "--trust-signer", s.people, "--trust-signer", s.nodes)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(out, "REFUSED  "+bump) ||
		!strings.Contains(out, "3 commits checked, 1 refused") {
		t.Fatalf("verify-commits %s..main: %v\n%s", signed, err, out)
	}
}

func metrics(t *testing.T, a *fleetlab.Agent) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + a.Healthz + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
