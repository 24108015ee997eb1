// Typed clients of the services, generated from proto/ (src/gen), over the
// Connect protocol at /rpc on the console server, which adds the caller's
// token. Pages take them from context so tests can hand in an in-memory
// transport (createRouterTransport) with the same generated types.
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { Client, Transport } from "@connectrpc/connect";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AlertService } from "../gen/churnwatch/v1/alert_service_pb";
import { RulesAdminService } from "../gen/churnwatch/v1/rules_admin_service_pb";
import { KpiService } from "../gen/churnwatch/v1/kpi_service_pb";
import { ShadowService } from "../gen/churnwatch/v1/shadow_service_pb";
import type { Session } from "./session";

export interface Api {
  alerts: Client<typeof AlertService>;
  rules: Client<typeof RulesAdminService>;
  kpis: Client<typeof KpiService>;
  shadow: Client<typeof ShadowService>;
  session: Session;
  // signedOut sends the browser to sign in again, back to where it was.
  signedOut: () => void;
}

export function browserTransport(): Transport {
  return createConnectTransport({ baseUrl: "/rpc", useBinaryFormat: false });
}

export function clients(t: Transport) {
  return { alerts: createClient(AlertService, t), rules: createClient(RulesAdminService, t), kpis: createClient(KpiService, t), shadow: createClient(ShadowService, t) };
}

export const ApiContext = createContext<Api | null>(null);

export function useApi(): Api {
  const api = useContext(ApiContext);
  if (!api) throw new Error("no API in context");
  return api;
}

// Problem is an RPC failure put in the RM's words with what to do next.
export interface Problem {
  code: Code;
  message: string;
}

export function problem(e: unknown, doing: string): Problem {
  const err = ConnectError.from(e);
  const what: Partial<Record<Code, string>> = {
    [Code.Unauthenticated]: "You are signed out. Sign in again to continue.",
    [Code.PermissionDenied]: "This is not yours: your role does not allow it.",
    [Code.NotFound]: "It does not exist (any more). Go back to the inbox.",
    [Code.FailedPrecondition]: "It changed meanwhile. Reload the page and try again.",
    [Code.InvalidArgument]: "Check what you entered and try again.",
    [Code.Unavailable]: "The service cannot be reached right now. Try again in a moment.",
    [Code.DeadlineExceeded]: "The service took too long. Try again in a moment.",
  };
  const next = what[err.code] ?? "Try again; if it keeps failing, tell operations what you were doing.";
  const detail = err.rawMessage ? ` (${err.rawMessage})` : "";
  return { code: err.code, message: `Could not ${doing}${detail}. ${next}` };
}
