/**
 * The byte API every connection offers (plain TCP, TLS, in memory), and writing all of it and
 * closing it the same way everywhere.
 *
 * @module
 */
import { libc } from "../sys/libc.ts"

/** The byte API of a connection: plain (`Deno.Conn`), TLS, or in memory. */
export interface Transport {
  readonly remoteAddr: Deno.Addr
  readonly localAddr: Deno.Addr
  /** Read into `buffer`: the number of bytes read, or `null` at the end of the stream. */
  read(buffer: Uint8Array): Promise<number | null>
  /** Write some of `data`: the number of bytes written. */
  write(data: Uint8Array): Promise<number>
  /** End our direction (TCP FIN, or TLS close_notify) after everything written. */
  closeWrite(): Promise<void>
  close(): void
}

/** Write all of `bytes` (a single `write` may write fewer). */
export const writeAll = async (conn: Pick<Transport, "write">, bytes: Uint8Array): Promise<void> => {
  let offset = 0
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset))
}

/**
 * Connections accepted on a `Deno.listenTls` listener whose TLS handshake has not finished. Deno
 * runs that handshake in a task of its own which holds the socket: `close()` frees the connection's
 * resource, but the socket stays open until the peer speaks or leaves, so a silent client could
 * keep any number of them. {@link closeQuietly} shuts such a socket down through the C library,
 * which ends the task. Without FFI nothing can, and the server does not use `Deno.listenTls`.
 */
export const unfinishedHandshakes: WeakSet<object> = new WeakSet()

/** Shut down this process's socket that has `conn`'s two ports, if it is still open. */
const shutdownSocket = (conn: Transport): void => {
  const c = libc()
  if (c === null) return
  const local = (conn.localAddr as Deno.NetAddr).port
  const remote = (conn.remoteAddr as Deno.NetAddr).port
  for (const fd of c.openDescriptors()) {
    const ports = c.socketPorts(fd)
    if (ports !== undefined && ports.local === local && ports.remote === remote) {
      c.shutdown(fd)
      return
    }
  }
}

/** Close a connection, listener or file that may be closed already (by its stream, or a peer). */
export const closeQuietly = (closable: { close(): void } | undefined): void => {
  try {
    closable?.close()
  } catch {
    // Closed already.
  }
  if (closable !== undefined && unfinishedHandshakes.has(closable)) {
    unfinishedHandshakes.delete(closable)
    shutdownSocket(closable as Transport)
  }
}
