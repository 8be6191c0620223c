/**
 * File contents of the in-memory filesystem: blocks of bytes, never changed once stored, so that a
 * reader keeps the version it opened while an upload builds the next one.
 *
 * @module
 */

/** File contents: blocks (shared between versions), never changed once stored. */
export interface Content {
  readonly blocks: ReadonlyArray<Uint8Array>
  readonly size: number
}

/** Bytes per stored block: big enough to keep the block list short, small enough to waste little. */
const BLOCK = 1 << 20
export const EMPTY: Content = { blocks: [], size: 0 }

/** Content accumulated from writes: copies each chunk into blocks (callers reuse their buffers). */
export class ContentBuilder {
  private readonly blocks: Uint8Array[] = []
  private current = new Uint8Array(0)
  private used = 0
  size = 0

  constructor(from: Content = EMPTY, keep = from.size) {
    for (const block of from.blocks) {
      if (this.size >= keep) break
      const part = block.subarray(0, Math.min(block.length, keep - this.size))
      this.blocks.push(part)
      this.size += part.length
    }
  }

  append(chunk: Uint8Array): void {
    for (let offset = 0; offset < chunk.length;) {
      if (this.used === this.current.length) {
        if (this.used > 0) this.blocks.push(this.current)
        this.current = new Uint8Array(Math.min(BLOCK, Math.max(chunk.length - offset, 64 << 10)))
        this.used = 0
      }
      const n = Math.min(chunk.length - offset, this.current.length - this.used)
      this.current.set(chunk.subarray(offset, offset + n), this.used)
      this.used += n
      offset += n
      this.size += n
    }
  }

  build(): Content {
    const blocks = this.used > 0 ? [...this.blocks, this.current.subarray(0, this.used)] : [...this.blocks]
    return { blocks, size: this.size }
  }
}

/** A byte stream (BYOB reads supported) over `content` from `offset`. */
export const contentStream = (content: Content, offset: number): ReadableStream<Uint8Array> => {
  let block = 0
  let within = offset
  while (block < content.blocks.length && within >= content.blocks[block].length) {
    within -= content.blocks[block].length
    block++
  }
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: 64 << 10,
    pull(controller) {
      const request = controller.byobRequest!
      const view = request.view!
      if (block >= content.blocks.length) {
        controller.close()
        request.respond(0)
        return
      }
      const target = new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
      let filled = 0
      while (filled < target.length && block < content.blocks.length) {
        const source = content.blocks[block]
        const n = Math.min(target.length - filled, source.length - within)
        target.set(source.subarray(within, within + n), filled)
        filled += n
        within += n
        if (within === source.length) {
          block++
          within = 0
        }
      }
      request.respond(filled)
    },
  })
}

/** A copy of `content` from byte `from` on. */
export const sliceContent = (content: Content, from: number): Uint8Array => {
  const out = new Uint8Array(content.size - from)
  let position = 0
  let filled = 0
  for (const block of content.blocks) {
    const end = position + block.length
    if (end > from) {
      const part = block.subarray(Math.max(0, from - position))
      out.set(part, filled)
      filled += part.length
    }
    position = end
  }
  return out
}
