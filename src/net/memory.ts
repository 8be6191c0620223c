/**
 * A network in memory: listeners by address and port, connections as pairs of in-memory
 * transports (like `socketpair`, or the mock connections of Deno std's HTTP tests). A server given
 * this network (the `Network` service) serves sessions with no socket at all.
 *
 * @module
 */
import type { Listener, NetworkShape } from "./network.ts"
import type { Transport } from "./transport.ts"

/** Bytes a direction holds before its writer waits: a slow reader holds back its writer, as TCP does. */
const HIGH_WATER = 1 << 20

/** One direction of a pair: written by one end, read by the other. */
class Pipe {
  private readonly chunks: Uint8Array[] = []
  private queued = 0
  private ended = false
  private broken = false
  private readers: Array<() => void> = []
  private writers: Array<() => void> = []

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.chunks.length === 0) {
      if (this.ended || this.broken) return null
      await new Promise<void>((resolve) => this.readers.push(resolve))
    }
    let n = 0
    while (n < buffer.length && this.chunks.length > 0) {
      const head = this.chunks[0]
      const take = Math.min(head.length, buffer.length - n)
      buffer.set(head.subarray(0, take), n)
      n += take
      if (take === head.length) this.chunks.shift()
      else this.chunks[0] = head.subarray(take)
    }
    this.queued -= n
    this.wake(this.writers)
    return n
  }

  async write(data: Uint8Array): Promise<number> {
    while (this.queued >= HIGH_WATER && !this.broken) {
      await new Promise<void>((resolve) => this.writers.push(resolve))
    }
    if (this.broken || this.ended) throw new Deno.errors.BrokenPipe("the other end is closed")
    // Copied: the writer may reuse its buffer as soon as this resolves.
    this.chunks.push(data.slice())
    this.queued += data.length
    this.wake(this.readers)
    return data.length
  }

  /** The writer is done: the reader gets the end of the stream after what is queued. */
  end(): void {
    this.ended = true
    this.wake(this.readers)
  }

  /** The reader is gone: writes fail, and reads end at once. */
  break(): void {
    this.broken = true
    this.chunks.length = 0
    this.queued = 0
    this.wake(this.readers)
    this.wake(this.writers)
  }

  private wake(waiting: Array<() => void>): void {
    for (const resolve of waiting.splice(0)) resolve()
  }
}

class MemoryTransport implements Transport {
  private closed = false

  constructor(
    private readonly incoming: Pipe,
    private readonly outgoing: Pipe,
    readonly localAddr: Deno.NetAddr,
    readonly remoteAddr: Deno.NetAddr,
  ) {}

  read(buffer: Uint8Array): Promise<number | null> {
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("closed"))
    return this.incoming.read(buffer)
  }

  write(data: Uint8Array): Promise<number> {
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("closed"))
    return this.outgoing.write(data)
  }

  closeWrite(): Promise<void> {
    this.outgoing.end()
    return Promise.resolve()
  }

  close(): void {
    if (this.closed) throw new Deno.errors.BadResource("closed already")
    this.closed = true
    this.outgoing.end()
    this.incoming.break()
  }
}

/**
 * Two connected in-memory transports: what one writes, the other reads.
 *
 * @example
 * ```ts
 * import { memoryPair } from "./memory.ts"
 * const addr = (port: number) => ({ transport: "tcp" as const, hostname: "127.0.0.1", port })
 * const [a, b] = memoryPair(addr(1), addr(2))
 * await a.write(new TextEncoder().encode("hi"))
 * const buffer = new Uint8Array(2)
 * console.log(await b.read(buffer)) // 2
 * ```
 */
export const memoryPair = (a: Deno.NetAddr, b: Deno.NetAddr): [Transport, Transport] => {
  const aToB = new Pipe()
  const bToA = new Pipe()
  return [new MemoryTransport(bToA, aToB, a, b), new MemoryTransport(aToB, bToA, b, a)]
}

const addr = (hostname: string, port: number): Deno.NetAddr => ({ transport: "tcp", hostname, port })

/** The in-memory network, and `connectFrom`, which connects as a client of another address. */
export interface MemoryNetwork extends NetworkShape {
  connectFrom(localAddress: string, hostname: string, port: number): Promise<Transport>
}

/**
 * A network that exists only in this process: `listen` takes any address and port (`0` picks
 * one), `connect` reaches a listener of this network. Client ends get ports from 40000 up.
 *
 * @example
 * ```ts
 * import { makeMemoryNetwork } from "@ftpd/server"
 * const network = makeMemoryNetwork()
 * const listener = network.listen("127.0.0.1", 21)
 * const client = await network.connect("127.0.0.1", 21)
 * const server = await listener.accept()
 * console.log((server.remoteAddr as Deno.NetAddr).port === (client.localAddr as Deno.NetAddr).port) // true
 * ```
 */
export const makeMemoryNetwork = (): MemoryNetwork => {
  const listeners = new Map<string, { readonly accepted: Transport[]; readonly waiting: Array<() => void> }>()
  let nextPort = 40000
  const key = (hostname: string, port: number) => `${hostname}:${port}`
  const connectFrom = (localAddress: string, hostname: string, port: number): Promise<Transport> => {
    const listener = listeners.get(key(hostname, port))
    if (listener === undefined) return Promise.reject(new Deno.errors.ConnectionRefused(`${hostname}:${port}`))
    const [client, server] = memoryPair(addr(localAddress, nextPort++), addr(hostname, port))
    listener.accepted.push(server)
    for (const wake of listener.waiting.splice(0)) wake()
    return Promise.resolve(client)
  }
  return {
    listen: (hostname, port): Listener => {
      const bound = port === 0 ? nextPort++ : port
      if (listeners.has(key(hostname, bound))) throw new Deno.errors.AddrInUse(`${hostname}:${bound}`)
      const state = { accepted: [] as Transport[], waiting: [] as Array<() => void>, closed: false }
      listeners.set(key(hostname, bound), state)
      return {
        addr: addr(hostname, bound),
        accept: async () => {
          for (;;) {
            if (state.closed) throw new Deno.errors.BadResource("listener closed")
            const next = state.accepted.shift()
            if (next !== undefined) return next
            await new Promise<void>((resolve) => state.waiting.push(resolve))
          }
        },
        close: () => {
          if (state.closed) return
          state.closed = true
          listeners.delete(key(hostname, bound))
          for (const pending of state.accepted.splice(0)) pending.close()
          for (const wake of state.waiting.splice(0)) wake()
        },
      }
    },
    connect: (hostname, port) => connectFrom("127.0.0.1", hostname, port),
    connectFrom,
  }
}
