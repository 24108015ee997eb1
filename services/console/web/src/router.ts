// A tiny client-side router on the History API: the console has a handful
// of pages, so a library would be larger than the need. The console server
// answers every client route with index.html.
import { h } from "preact";
import type { AnchorHTMLAttributes, ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";

const listeners = new Set<() => void>();

export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  listeners.forEach((l) => l());
}

// useLocation re-renders on navigation and returns the path and query.
export function useLocation(): { path: string; query: URLSearchParams } {
  const [, tick] = useState(0);
  useEffect(() => {
    const l = () => tick((n) => n + 1);
    listeners.add(l);
    window.addEventListener("popstate", l);
    return () => {
      listeners.delete(l);
      window.removeEventListener("popstate", l);
    };
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

export type Route =
  | { page: "inbox" }
  | { page: "alert"; alertId: string }
  | { page: "kpis" }
  | { page: "thresholds" }
  | { page: "not-found" };

export function route(path: string): Route {
  if (path === "/" || path === "") return { page: "inbox" };
  if (path === "/kpis") return { page: "kpis" };
  if (path === "/thresholds") return { page: "thresholds" };
  const m = /^\/alerts\/([^/]+)$/.exec(path);
  if (m) return { page: "alert", alertId: decodeURIComponent(m[1]) };
  return { page: "not-found" };
}

export function alertPath(alertId: string): string {
  return `/alerts/${encodeURIComponent(alertId)}`;
}

// Link is an <a> that navigates without a reload (a modified click, e.g. to
// open a new tab, is left to the browser).
export function Link(props: { href: string; children: ComponentChildren } & AnchorHTMLAttributes<HTMLAnchorElement>) {
  const { href, children, ...rest } = props;
  return h(
    "a",
    {
      ...rest,
      href,
      onClick: (e: MouseEvent) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(href);
      },
    },
    children,
  );
}
