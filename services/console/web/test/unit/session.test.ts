import { describe, expect, it } from "vitest";
import { fetchSession, loginUrl, SignedOut } from "../../src/api/session";

const answer = (status: number, body: unknown) => (async () => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } })) as unknown as typeof fetch;

describe("session", () => {
  it("reads who is signed in", async () => {
    const s = await fetchSession(answer(200, { sub: "bh-01", role: "branch_head", branch: "br-01", expiresAt: "2026-12-01T20:00:00Z", devMode: true }));
    expect(s).toEqual({ sub: "bh-01", role: "branch_head", branch: "br-01", expiresAt: "2026-12-01T20:00:00Z", devMode: true });
  });

  it("treats 401 as signed out, with the server's sign-in path", async () => {
    const e = await fetchSession(answer(401, { error: "signed out", login: "/login" })).catch((x) => x);
    expect(e).toBeInstanceOf(SignedOut);
    expect((e as SignedOut).login).toBe("/login");
    expect(loginUrl("/login", "/alerts/a 1?x=1")).toBe("/login?next=%2Falerts%2Fa%201%3Fx%3D1");
  });

  it("refuses an off-site sign-in path and names other failures", async () => {
    const e = await fetchSession(answer(401, { login: "https://evil.example/" })).catch((x) => x);
    expect((e as SignedOut).login).toBe("/login");
    await expect(fetchSession(answer(502, {}))).rejects.toThrow(/answered 502 to \/api\/session/);
    await expect(fetchSession(answer(200, { role: "manager" }))).rejects.toThrow(/without sub or role/);
  });
});
