// A TCP relay in front of the console, so a test can cut the browser's
// connections (a real network drop: open streams die, new connections are
// refused) and then let them through again.
import net from "node:net";

export class DropProxy {
  private server?: net.Server;
  private sockets = new Set<net.Socket>();
  private down = false;

  constructor(private readonly target: URL) {}

  async start(): Promise<string> {
    this.server = net.createServer((client) => {
      if (this.down) {
        client.destroy();
        return;
      }
      const upstream = net.connect(Number(this.target.port), this.target.hostname);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    const { port } = this.server.address() as net.AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  // drop cuts every open connection and refuses new ones until restore.
  drop(): void {
    this.down = true;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.down = false;
  }

  async stop(): Promise<void> {
    this.drop();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
