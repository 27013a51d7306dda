package trust

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// parseAllowedSigner reads one line of an allowed_signers file, as
// ssh-keygen(1) "ALLOWED SIGNERS" describes it: principals, options, key.
// The options after the principals have authorized_keys syntax, so
// x/crypto/ssh parses them with the key.
func (sg *Signer) parseAllowedSigner(at, line string) error {
	principals, rest, err := cutPrincipals(line)
	if err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	pub, _, options, _, err := ssh.ParseAuthorizedKey([]byte(rest))
	if err != nil {
		return fmt.Errorf("%s: allowed_signers line: want \"principals [options] keytype key\": %w", at, err)
	}
	sg.ssh, sg.Name = pub, principals
	for _, opt := range options {
		if err := sg.option(opt); err != nil {
			return fmt.Errorf("%s: allowed_signers option %s: %w", at, opt, err)
		}
	}
	return nil
}

// cutPrincipals splits the principals field (possibly quoted) from the rest.
func cutPrincipals(line string) (principals, rest string, err error) {
	if strings.HasPrefix(line, `"`) {
		end := strings.Index(line[1:], `"`)
		if end < 0 {
			return "", "", fmt.Errorf("unterminated quoted principals")
		}
		return line[1 : end+1], strings.TrimSpace(line[end+2:]), nil
	}
	principals, rest, ok := strings.Cut(line, " ")
	if !ok {
		return "", "", fmt.Errorf("want \"principals [options] keytype key\", got one field")
	}
	return principals, strings.TrimSpace(rest), nil
}

func (sg *Signer) option(opt string) error {
	name, value, _ := strings.Cut(opt, "=")
	value = strings.Trim(value, `"`)
	var err error
	switch strings.ToLower(name) {
	case "namespaces":
		sg.namespaces = strings.Split(value, ",")
	case "valid-after":
		sg.validAfter, err = parseSignerTime(value)
	case "valid-before":
		sg.validBefore, err = parseSignerTime(value)
	case "cert-authority":
		err = fmt.Errorf("certificate authorities are not supported: list the signers' keys")
	default:
		err = fmt.Errorf("unknown option (want namespaces, valid-after or valid-before)")
	}
	return err
}

// parseSignerTime reads YYYYMMDD[HHMM[SS]], local time unless it ends in Z.
func parseSignerTime(v string) (time.Time, error) {
	loc := time.Local
	if s, ok := strings.CutSuffix(v, "Z"); ok {
		v, loc = s, time.UTC
	}
	for _, layout := range []string{"20060102", "200601021504", "20060102150405"} {
		if len(v) != len(layout) {
			continue
		}
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, optionally ending in Z", v)
}

// allows returns why the signer's allowed_signers line does not allow an
// SSH signature in namespace ns on a commit made at when (nil when it does).
func (sg *Signer) allows(ns string, when time.Time) error {
	if sg.namespaces != nil && !slices.Contains(sg.namespaces, ns) {
		return fmt.Errorf("%w: %s allows %s only for namespaces %s (%s)", ErrNamespace, sg.Key, sg.Name, strings.Join(sg.namespaces, ","), sg.Source)
	}
	if !sg.validAfter.IsZero() && when.Before(sg.validAfter) {
		return fmt.Errorf("%w: %s (%s) is valid only after %s, the commit is of %s", ErrKeyExpired, sg.Name, sg.Source, sg.validAfter.Format(time.RFC3339), when.Format(time.RFC3339))
	}
	if !sg.validBefore.IsZero() && !when.Before(sg.validBefore) {
		return fmt.Errorf("%w: %s (%s) is valid only before %s, the commit is of %s", ErrKeyExpired, sg.Name, sg.Source, sg.validBefore.Format(time.RFC3339), when.Format(time.RFC3339))
	}
	return nil
}
