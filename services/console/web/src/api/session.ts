// Who is signed in, as the console server tells it. The session cookie is
// HttpOnly: the app never sees a token, only this summary.
export interface Session {
  sub: string;
  role: "manager" | "branch_head" | "ops" | "admin" | string;
  branch: string;
  expiresAt: string;
  devMode: boolean;
}

export class SignedOut extends Error {
  constructor(readonly login = "/login") {
    super("signed out");
  }
}

export function loginUrl(login: string, next: string): string {
  return `${login}?next=${encodeURIComponent(next)}`;
}

// fetchSession asks the console server who is signed in; SignedOut when
// nobody is (401), an Error naming the status otherwise.
export async function fetchSession(fetcher: typeof fetch = fetch): Promise<Session> {
  const res = await fetcher("/api/session", { credentials: "same-origin", headers: { accept: "application/json" } });
  if (res.status === 401) {
    let login = "/login";
    try {
      const body = (await res.json()) as { login?: string };
      if (typeof body.login === "string" && body.login.startsWith("/")) login = body.login;
    } catch {
      // a 401 without the JSON body still means signed out
    }
    throw new SignedOut(login);
  }
  if (!res.ok) throw new Error(`the console server answered ${res.status} to /api/session; reload the page, and if it persists ask operations to check the console server's log`);
  const s = (await res.json()) as Partial<Session>;
  if (typeof s.sub !== "string" || typeof s.role !== "string") {
    throw new Error("the console server sent a session without sub or role; ask operations to check the console version");
  }
  return { sub: s.sub, role: s.role, branch: s.branch ?? "", expiresAt: s.expiresAt ?? "", devMode: !!s.devMode };
}

// mayReassign mirrors the access table for showing the Reassign button; the
// alerts service enforces it either way.
export function mayReassign(s: Session): boolean {
  return s.role === "branch_head" || s.role === "ops" || s.role === "admin";
}

// seesManagers: roles whose inbox spans several managers, so it offers the
// relationship-manager filter.
export function seesManagers(s: Session): boolean {
  return s.role !== "manager";
}

// seesKpis mirrors auth.Access for KpiService.GetKpis (branch heads: their
// branch; ops and admin: the bank); the service enforces it either way.
export function seesKpis(s: Session): boolean {
  return s.role === "branch_head" || s.role === "ops" || s.role === "admin";
}

// managesThresholds mirrors auth.Access for the thresholds RPCs: ops and
// admin read, propose, approve and reject.
export function managesThresholds(s: Session): boolean {
  return s.role === "ops" || s.role === "admin";
}
