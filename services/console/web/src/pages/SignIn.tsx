// The sign-in screen. Normally the console server answers /login itself and
// sends the browser to the bank's sign-in (OpenID Connect); the app shows
// this screen only when /login reaches it, i.e. no IdP is configured: then
// the development sign-in of `churnwatch dev` is the way in.
import { roleLabel } from "../format";

export function SignIn({ next, signedInAs }: { next: string; signedInAs?: string }) {
  const back = next.startsWith("/") && !next.startsWith("//") ? next : "/";
  if (signedInAs) {
    return (
      <section class="center">
        <h1>You are signed in</h1>
        <p>You are signed in as <strong>{signedInAs}</strong>. <a href={back}>Continue</a>.</p>
      </section>
    );
  }
  return (
    <main id="main" class="center signin">
      <h1>Sign in to churnwatch</h1>
      <p>
        This console has no bank sign-in configured. On a development stack
        (<code>churnwatch dev</code>) sign in as any manager, branch head or
        operations user below; a production console sends you to the bank's
        sign-in instead.
      </p>
      <form method="get" action="/dev/login" class="card">
        <label>
          User id
          <input name="sub" required defaultValue="rm-001" autoComplete="username" />
        </label>
        <label>
          Role
          <select name="role" defaultValue="manager">
            {["manager", "branch_head", "ops", "admin"].map((r) => (
              <option value={r}>{roleLabel[r]}</option>
            ))}
          </select>
        </label>
        <label>
          Branch (branch heads only)
          <input name="branch" placeholder="br-01" />
        </label>
        <input type="hidden" name="next" value={back} />
        <button type="submit">Sign in</button>
      </form>
    </main>
  );
}
