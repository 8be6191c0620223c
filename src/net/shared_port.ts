/**
 * A listener that shares its port with the listeners of other workers (`SO_REUSEPORT`: the kernel
 * spreads new connections over them), through `node:net`. `Deno.listen` has a `reusePort` option
 * too, but only with `--unstable-net`; `node:net` needs no flag, so `--workers` works with the
 * same command line as one worker. Its connections are wrapped as {@link Transport}s.
 *
 * `node:net` reads on its own (a `data` event per chunk): this wrapper queues what arrives and
 * pauses the socket while more than {@link HIGH_WATER} bytes wait, so a client that floods a
 * control connection is held back by TCP, as with `Deno.Conn`. Urgent data (a Telnet Synch) does
 * not stall it (measured: an `ABOR` sent with `MSG_OOB` arrives at once).
 *
 * @module
 */
import net from "node:net"
import type { Listener } from "./network.ts"
import type { Transport } from "./transport.ts"
import { ChunkQueue } from "./_chunks.ts"

/** Bytes a connection queues before its socket is paused. */
const HIGH_WATER = 64 << 10

const netAddr = (hostname: string | undefined, port: number | undefined): Deno.NetAddr => ({
  transport: "tcp",
  hostname: hostname ?? "",
  port: port ?? 0,
})

/** A `node:net` socket as a {@link Transport}. */
class SocketTransport implements Transport {
  private readonly queue = new ChunkQueue()
  readonly remoteAddr: Deno.NetAddr
  readonly localAddr: Deno.NetAddr

  constructor(private readonly socket: net.Socket) {
    this.remoteAddr = netAddr(socket.remoteAddress, socket.remotePort)
    this.localAddr = netAddr(socket.localAddress, socket.localPort)
    socket.setNoDelay(true)
    socket.on("data", (chunk: Uint8Array) => {
      this.queue.push(chunk)
      if (this.queue.queued > HIGH_WATER) socket.pause()
    })
    socket.on("end", () => this.queue.end())
    socket.on("close", () => this.queue.end())
    socket.on("error", (error) => this.queue.fail(error))
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    const n = await this.queue.read(buffer)
    if (this.queue.queued <= HIGH_WATER && this.socket.isPaused()) this.socket.resume()
    return n
  }

  write(data: Uint8Array): Promise<number> {
    if (this.socket.destroyed) return Promise.reject(new Deno.errors.BrokenPipe("socket closed"))
    // The socket keeps the chunk until it is sent: a caller's reused buffer must be copied.
    return new Promise((resolve, reject) =>
      this.socket.write(data.slice(), (error) => (error ? reject(error) : resolve(data.length)))
    )
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.socket.end(() => resolve()))
  }

  close(): void {
    if (this.socket.destroyed) throw new Deno.errors.BadResource("socket closed")
    this.socket.destroy()
  }
}

/**
 * Listen on `hostname:port` with `SO_REUSEPORT`, so that every worker's listener takes its share
 * of the connections. Throws Deno's `AddrInUse` when another program holds the port.
 */
export const listenSharedPort = async (hostname: string, port: number): Promise<Listener> => {
  const accepted: Transport[] = []
  let waiting: { resolve: (conn: Transport) => void; reject: (error: Error) => void } | undefined
  let closed = false
  const server = net.createServer({ pauseOnConnect: false }, (socket) => {
    const conn = new SocketTransport(socket)
    const taker = waiting
    waiting = undefined
    if (taker !== undefined) taker.resolve(conn)
    else accepted.push(conn)
  })
  await new Promise<void>((resolve, reject) => {
    // As Deno.listen would throw them, so that callers word them the same way.
    server.once("error", (error: Error & { code?: string }) =>
      reject(
        error.code === "EADDRINUSE"
          ? new Deno.errors.AddrInUse(error.message)
          : error.code === "EACCES"
          ? new Deno.errors.PermissionDenied(error.message)
          : error.code === "EADDRNOTAVAIL"
          ? new Deno.errors.AddrNotAvailable(error.message)
          : error,
      ))
    server.listen({ host: hostname, port, reusePort: true } as net.ListenOptions, () => resolve())
  })
  const address = server.address() as net.AddressInfo
  return {
    addr: netAddr(address.address, address.port),
    accept: () => {
      if (closed) return Promise.reject(new Deno.errors.BadResource("listener closed"))
      const next = accepted.shift()
      if (next !== undefined) return Promise.resolve(next)
      return new Promise((resolve, reject) => (waiting = { resolve, reject }))
    },
    close: () => {
      if (closed) return
      closed = true
      server.close()
      waiting?.reject(new Deno.errors.BadResource("listener closed"))
      waiting = undefined
      for (const conn of accepted.splice(0)) conn.close()
    },
  }
}
