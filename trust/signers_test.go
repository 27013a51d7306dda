package trust

import (
	"strings"
	"testing"
	"time"
)

func TestLoadSignersFormatsAndRoles(t *testing.T) {
	_, ada := sshKey(t, "ada@laptop")
	_, node1 := sshKey(t, "node-1")
	_, node2 := sshKey(t, "node-2")
	bob := pgpKey(t, "Bob", nil)
	pub := writeFile(t, "ada.pub", ada+"\n")
	allowed := writeFile(t, "allowed_signers", "# people first\n"+
		`"ops@example.com,sre@example.com" namespaces="git,file" `+strings.Fields(ada)[0]+" "+strings.Fields(ada)[1]+"\n"+
		"# reconciler-role: agent\n"+
		"node-1 "+node1+"\n"+
		`node-2 valid-after="20250101",valid-before="203001011200Z" `+node2+"\n")
	keys := writeFile(t, "bob.asc", "# reconciler-role: agent\n"+armored(t, bob, false))
	set, err := LoadSigners(pub, allowed, keys)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range set.List() {
		got = append(got, s.Name+"/"+string(s.Role))
	}
	// ada's key appears twice (ada.pub, allowed_signers) with one role: kept once.
	want := []string{"ada@laptop/person", "node-1/agent", "node-2/agent", "Bob <bob@example.com>/agent"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("signers %v, want %v", got, want)
	}
	n2 := set.List()[2]
	if n2.validAfter.IsZero() || !n2.validBefore.Equal(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("node-2 window %v .. %v", n2.validAfter, n2.validBefore)
	}
	if !strings.HasPrefix(set.List()[3].Key, "openpgp ") || !strings.HasSuffix(set.List()[1].Source, "allowed_signers:4") {
		t.Fatalf("keys and sources: %+v", set.List())
	}
}

// TestLoadSignersRefuses: a --trust-signer file that is a private key,
// empty, or unreadable is an error naming the file and line.
func TestLoadSignersRefuses(t *testing.T) {
	sshPriv, _, err := GenerateSSHKey("x", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, pub := sshKey(t, "ada")
	for _, tc := range []struct {
		name, content, want string
	}{
		{"empty", "", "f: no public key in it"},
		{"only comments", "# nobody yet\n\n", "f: no public key in it"},
		{"SSH private key", string(sshPriv), "f:1: this is a private key; a --trust-signer file takes public keys only"},
		{"OpenPGP private key", armored(t, pgpKey(t, "Bob", nil), true), "f:1: this is a private key"},
		{"PEM private key after EC parameters (openssl ecparam -genkey)", "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n", "f:4: this is a private key"},
		{"cosign public key", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n", `f:1: a PEM "PUBLIC KEY" block is not an OpenPGP or SSH public key (release keys go to --trust-key)`},
		{"unknown role", "# reconciler-role: admin\n" + pub, `f:1: role "admin": want person or agent`},
		{"garbage line", "# people\nhello world\n", "f:2: allowed_signers line"},
		{"truncated key", "ssh-ed25519 AAAAC3Nza\n", "f:1: SSH public key"},
		{"cert-authority", "*@example.com cert-authority " + pub, "f:1: allowed_signers option cert-authority: certificate authorities are not supported"},
		{"unknown option", "ada restrict " + pub, "f:1: allowed_signers option restrict: unknown option"},
		{"bad time", `ada valid-before="tomorrow" ` + pub, `f:1: allowed_signers option valid-before="tomorrow": time "tomorrow"`},
		{"OpenPGP block cut short", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n", "f:1: OpenPGP key block without -----END PGP PUBLIC KEY BLOCK-----"},
		{"same key as person and agent", "ada " + pub + "\n# reconciler-role: agent\nnode " + pub, "f:3: key ssh SHA256:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "f", tc.content)
			_, err := LoadSigners(path)
			if err == nil {
				t.Fatal("loaded")
			}
			msg := strings.ReplaceAll(err.Error(), path, "f")
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("error:\n  %s\nwant %q", msg, tc.want)
			}
		})
	}
	if _, err := LoadSigners(writeFile(t, "a", pub), "/nonexistent/keys"); err == nil || !strings.Contains(err.Error(), "/nonexistent/keys") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestSigningKeys(t *testing.T) {
	priv, pub, err := GenerateSSHKey("node-1", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseSigningKey(priv, nil); err == nil || !strings.Contains(err.Error(), "encrypted and no passphrase") {
		t.Fatalf("encrypted key without passphrase: %v", err)
	}
	k, err := ParseSigningKey(priv, []byte("secret"))
	if err != nil || k.Format() != FormatSSH || !strings.HasPrefix(k.ID(), "ssh SHA256:") {
		t.Fatalf("ssh key: %v %+v", err, k)
	}
	if _, err := ParseSigningKey(pub, nil); err == nil || !strings.Contains(err.Error(), "public key: give the private key") {
		t.Fatalf("public key as signing key: %v", err)
	}
	e := pgpKey(t, "Bob", nil)
	pk, err := ParseSigningKey([]byte(armored(t, e, true)), nil)
	if err != nil || pk.Format() != FormatOpenPGP {
		t.Fatalf("openpgp key: %v", err)
	}
	if _, err := ParseSigningKey([]byte(armored(t, e, false)), nil); err == nil {
		t.Fatal("an OpenPGP public key signs")
	}
}
