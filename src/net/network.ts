/**
 * The `Network` service: where the server listens and connects. Every socket of the server comes
 * from here; `denoNetwork` (the default) is Deno's own, and `net/memory.ts` has one in memory for
 * tests that need no socket.
 *
 * @module
 */
import * as Context from "effect/Context"
import type { Transport } from "./transport.ts"

/** A listening socket whose connections are {@link Transport}s. */
export interface Listener {
  readonly addr: Deno.NetAddr
  accept(): Promise<Transport>
  close(): void
}

/** PEM certificate chain and key for a listener whose connections are TLS from their first byte. */
export interface NativeTls {
  readonly cert: string
  readonly key: string
}

/** A connection accepted by a TLS listener: its handshake runs when asked (or at the first read or write). */
export interface NativeTlsTransport extends Transport {
  handshake(): Promise<unknown>
}

/** Listening and connecting; every method throws Deno's errors (`AddrInUse`, `NotCapable`, ...). */
export interface NetworkShape {
  listen(hostname: string, port: number): Listener
  /**
   * A listener whose connections speak TLS from their first byte, handled in native code
   * (`Deno.listenTls`); absent where the network has none, and then `node:tls` is used.
   */
  readonly listenTls?: (hostname: string, port: number, tls: NativeTls) => Listener
  connect(hostname: string, port: number, signal?: AbortSignal): Promise<Transport>
  /**
   * A listener that shares its port with other listeners (`SO_REUSEPORT`: the kernel spreads the
   * connections over them), for servers running as several workers; absent where the network has none.
   */
  readonly listenReusable?: (hostname: string, port: number) => Promise<Listener>
}

/** Deno's own network. */
export const denoNetwork: NetworkShape = {
  listen: (hostname, port) => Deno.listen({ hostname, port, transport: "tcp" }) as Deno.Listener as Listener,
  listenTls: (hostname, port, tls) =>
    Deno.listenTls({ hostname, port, transport: "tcp", cert: tls.cert, key: tls.key }) as Deno.Listener as Listener,
  connect: (hostname, port, signal) => Deno.connect({ hostname, port, transport: "tcp", signal }),
  listenReusable: async (hostname, port) => {
    if (unstableNet()) {
      return Deno.listen({ hostname, port, transport: "tcp", reusePort: true } as Deno.TcpListenOptions) as Listener
    }
    // Loaded only by servers that share their port: node:net costs memory the others need not pay.
    return (await import("./shared_port.ts")).listenSharedPort(hostname, port)
  },
}

/**
 * Whether Deno runs with `--unstable-net`, which `Deno.listen({ reusePort })` needs (without it,
 * the call ends the process). Workers listen through `Deno.listen` then, and through `node:net`
 * otherwise, which costs about 0.07 ms more CPU per connection (measured per connect+login+QUIT in
 * one worker: 0.40 ms against 0.33 ms). `Deno.listenDatagram` exists only under the same flag.
 */
const unstableNet = (): boolean => "listenDatagram" in Deno

/**
 * The network a server uses: Deno's, unless a layer provides another.
 *
 * @example
 * ```ts
 * import { makeMemoryNetwork, Network } from "@ftpd/server"
 * import { Layer } from "effect"
 * const inMemory = Layer.succeed(Network, makeMemoryNetwork())
 * ```
 */
export const Network: Context.Reference<NetworkShape> = Context.Reference<NetworkShape>("@ftpd/server/Network", {
  defaultValue: () => denoNetwork,
})
