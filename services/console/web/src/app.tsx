// The console's shell: the signed-in header with the navigation, and the
// page for the current route.
import type { Api } from "./api/clients";
import { ApiContext } from "./api/clients";
import { roleLabel, timeZoneName } from "./format";
import { Link, route, useLocation } from "./router";
import { Inbox } from "./pages/Inbox";
import { AlertPage } from "./pages/AlertPage";
import { Kpis } from "./pages/Kpis";
import { Thresholds } from "./pages/Thresholds";
import { managesThresholds, seesKpis } from "./api/session";

export function Shell({ api }: { api: Api }) {
  const { path, query } = useLocation();
  const r = route(path);
  const s = api.session;
  return (
    <ApiContext.Provider value={api}>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <span class="brand">churnwatch</span>
        <nav aria-label="Main">
          <Link href="/" aria-current={r.page === "inbox" ? "page" : undefined}>Inbox</Link>
          {seesKpis(s) && <Link href="/kpis" aria-current={r.page === "kpis" ? "page" : undefined}>KPIs</Link>}
          {managesThresholds(s) && <Link href="/thresholds" aria-current={r.page === "thresholds" ? "page" : undefined}>Thresholds</Link>}
        </nav>
        <div class="who">
          <span>
            Signed in as <strong>{s.sub}</strong> · {roleLabel[s.role] ?? s.role}
            {s.branch ? ` · branch ${s.branch}` : ""}
            {s.devMode ? " · development sign-in" : ""}
          </span>
          <form method="post" action="/logout">
            <button type="submit" class="link">Sign out</button>
          </form>
        </div>
      </header>
      <main id="main">
        {r.page === "inbox" && <Inbox query={query} />}
        {r.page === "alert" && <AlertPage key={r.alertId} alertId={r.alertId} />}
        {r.page === "kpis" && <Kpis query={query} />}
        {r.page === "thresholds" && <Thresholds query={query} />}
        {r.page === "not-found" && (
          <section>
            <h1>Page not found</h1>
            <p>There is no page at {path}. <Link href="/">Go to the inbox</Link>.</p>
          </section>
        )}
      </main>
      <footer class="foot">Times are shown in your browser's time zone, {timeZoneName()}.</footer>
    </ApiContext.Provider>
  );
}
