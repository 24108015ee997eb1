// Entry point: ask the console server who is signed in, then render the
// console; signed out → the server's sign-in, coming back here afterwards.
import { render } from "preact";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { browserTransport, clients } from "./api/clients";
import { fetchSession, loginUrl, SignedOut } from "./api/session";
import { Shell } from "./app";

const root = document.getElementById("app")!;
const here = () => location.pathname + location.search;

function signedOut(login = "/login") {
  location.assign(loginUrl(login, here()));
}

async function start() {
  try {
    const session = await fetchSession();
    render(<Shell api={{ ...clients(browserTransport()), session, signedOut: () => signedOut() }} />, root);
  } catch (e) {
    if (e instanceof SignedOut) {
      // The console server's /login signs in (the bank's IdP, or the dev
      // sign-in page under churnwatch dev) and comes back to this page.
      signedOut(e.login);
      return;
    }
    render(
      <main id="main" class="center">
        <h1>The console cannot start</h1>
        <p role="alert">{String((e as Error).message ?? e)}</p>
        <p><a href={here()}>Try again</a></p>
      </main>,
      root,
    );
  }
}

void start();
