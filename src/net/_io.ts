/**
 * Two small helpers every piece of the transport needs.
 *
 * @module
 */

/** Write all of `bytes` (a single `write` may write fewer). */
export const writeAll = async (conn: Pick<Deno.Conn, "write">, bytes: Uint8Array): Promise<void> => {
  let offset = 0
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset))
}

/** Close a connection, listener or file that may be closed already (by its stream, or a peer). */
export const closeQuietly = (closable: { close(): void } | undefined): void => {
  try {
    closable?.close()
  } catch {
    // Closed already.
  }
}
