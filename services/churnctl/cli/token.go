package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/auth"
)

func init() {
	Register(&Command{Name: "token mint", Args: "--subject ID --role ROLE [--branch B] [--ttl 12h] [--key FILE] [--issuer ISS] [--audience AUD] [--kid KID]",
		Summary: "sign a token with the dev key (CHURNWATCH_DEV_KEY)", Run: tokenMint})
}

func tokenMint(_ context.Context, env *Env, args []string) error {
	fs := NewFlags(env, "token mint")
	subject := fs.String("subject", "", "principal id, e.g. rm-001")
	role := fs.String("role", "", "manager, branch_head, ops, admin or ingest")
	branch := fs.String("branch", "", "branch id (branch_head)")
	ttl := fs.Duration("ttl", 12*time.Hour, "validity")
	key := fs.String("key", env.Getenv("CHURNWATCH_DEV_KEY"), "PKCS#8 PEM signing key")
	// The services' own settings, so that a minted token passes them.
	issuer := fs.String("issuer", env.Getenv("CHURNWATCH_AUTH_ISSUER"), "iss claim (default CHURNWATCH_AUTH_ISSUER, else churnwatch)")
	audience := fs.String("audience", env.Getenv("CHURNWATCH_AUTH_AUDIENCE"), "aud claim (default CHURNWATCH_AUTH_AUDIENCE)")
	kid := fs.String("kid", "", "kid header (a key id of the services' JWKS)")
	if _, err := Parse(fs, args); err != nil {
		return err
	}
	if *key == "" {
		return Usagef("no signing key: pass --key or set CHURNWATCH_DEV_KEY (source DIR/dev.env)")
	}
	if v := env.Getenv("CHURNWATCH_AUTH_MAX_TTL"); v != "" {
		if max, err := time.ParseDuration(v); err == nil && max > 0 && *ttl > max {
			return Usagef("--ttl %s exceeds CHURNWATCH_AUTH_MAX_TTL %s: the services would refuse the token", *ttl, max)
		}
	}
	signer, err := auth.LoadSigner(*key)
	if err != nil {
		return err
	}
	tok, err := auth.MintWith(signer, auth.Principal{Subject: *subject, Role: auth.Role(*role), Branch: *branch}, *ttl,
		auth.MintOptions{Issuer: *issuer, Audience: *audience, KeyID: *kid})
	if err != nil {
		return Usagef("%v", err)
	}
	_, err = fmt.Fprintln(env.Stdout, tok)
	return err
}
