/**
 * What a `node:net` or `node:tls` socket pushes (a `data` event per chunk), queued for a
 * `Transport`'s pull-style `read`. The owner pauses and resumes its socket from `queued`.
 *
 * @module
 */
/** Chunks waiting to be read, the end of the stream, or its failure. */
export class ChunkQueue {
  private readonly chunks: Uint8Array[] = []
  private ended = false
  private failure: unknown = undefined
  private wake: (() => void) | undefined
  /** Bytes waiting. */
  queued = 0

  push(chunk: Uint8Array): void {
    this.chunks.push(chunk)
    this.queued += chunk.length
    this.notify()
  }

  /** No more chunks: `read` returns `null` once the queue is empty. */
  end(): void {
    this.ended = true
    this.notify()
  }

  /** The first failure wins; `read` throws it once the queue is empty. */
  fail(error: unknown): void {
    this.failure ??= error
    this.notify()
  }

  /** The recorded failure, if any. */
  get failed(): unknown {
    return this.failure
  }

  /** A `Transport`'s `read`: waits for a chunk, then copies as much as fits into `buffer`. */
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.chunks.length === 0) {
      if (this.failure !== undefined) throw this.failure
      if (this.ended) return null
      await new Promise<void>((resolve) => (this.wake = resolve))
    }
    let n = 0
    while (n < buffer.length && this.chunks.length > 0) {
      const head = this.chunks[0]
      const take = Math.min(head.length, buffer.length - n)
      buffer.set(take === head.length ? head : head.subarray(0, take), n)
      n += take
      if (take === head.length) this.chunks.shift()
      else this.chunks[0] = head.subarray(take)
    }
    this.queued -= n
    return n
  }

  private notify(): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }
}
