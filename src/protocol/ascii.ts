/**
 * TYPE A (ASCII) conversion of the data stream (RFC 959 section 3.1.1.1): lines end with CRLF on
 * the wire and with LF on disk. Both converters keep state so that a CRLF split across two chunks
 * is handled, and both return the input chunk itself when it needs no change.
 *
 * @module
 */

const LF = 10
const CR = 13

/**
 * Converts file bytes to the network form: an LF not preceded by CR becomes CRLF; existing CRLFs
 * are left alone.
 *
 * @example
 * ```ts
 * import { ToNetworkAscii } from "./ascii.ts"
 * const ascii = new ToNetworkAscii()
 * console.log(new TextDecoder().decode(ascii.convert(new TextEncoder().encode("a\nb\r\n")))) // "a\r\nb\r\n"
 * ```
 */
export class ToNetworkAscii {
  #previousCR = false

  /** Convert one chunk; returns `chunk` itself when it has no bare LF. */
  convert(chunk: Uint8Array): Uint8Array {
    const length = chunk.length
    if (length === 0) return chunk
    let lf = chunk.indexOf(LF)
    let bare = 0
    while (lf !== -1) {
      if (!(lf === 0 ? this.#previousCR : chunk[lf - 1] === CR)) bare++
      lf = chunk.indexOf(LF, lf + 1)
    }
    const previousCR = this.#previousCR
    this.#previousCR = chunk[length - 1] === CR
    if (bare === 0) return chunk
    const out = new Uint8Array(length + bare)
    let from = 0
    let to = 0
    lf = chunk.indexOf(LF)
    while (lf !== -1) {
      if (!(lf === 0 ? previousCR : chunk[lf - 1] === CR)) {
        out.set(chunk.subarray(from, lf), to)
        to += lf - from
        out[to++] = CR
        from = lf
      }
      lf = chunk.indexOf(LF, lf + 1)
    }
    out.set(chunk.subarray(from), to)
    return out
  }
}

/**
 * Converts network bytes to the file form: CRLF becomes LF; a CR not followed by LF is kept. A CR
 * that ends a chunk is held until the next chunk (or {@link FromNetworkAscii.flush}) shows what
 * follows it.
 *
 * @example
 * ```ts
 * import { FromNetworkAscii } from "./ascii.ts"
 * const ascii = new FromNetworkAscii()
 * const enc = new TextEncoder()
 * const a = ascii.convert(enc.encode("a\r")) // "a": the CR is held
 * const b = ascii.convert(enc.encode("\nb")) // "\nb"
 * console.log(a.length + b.length, ascii.flush().length) // 3 0
 * ```
 */
export class FromNetworkAscii {
  #heldCR = false

  /** Convert one chunk; returns `chunk` itself when it has no CR and no CR is held. */
  convert(chunk: Uint8Array): Uint8Array {
    const length = chunk.length
    if (!this.#heldCR && chunk.indexOf(CR) === -1) return chunk
    if (length === 0) return chunk
    const out = new Uint8Array(length + 1)
    let to = 0
    if (this.#heldCR) {
      this.#heldCR = false
      if (chunk[0] !== LF) out[to++] = CR
    }
    let from = 0
    let cr = chunk.indexOf(CR)
    while (cr !== -1) {
      if (cr === length - 1) {
        this.#heldCR = true
      } else if (chunk[cr + 1] !== LF) {
        cr = chunk.indexOf(CR, cr + 1)
        continue
      }
      // Drop this CR: copy up to it and continue after it.
      out.set(chunk.subarray(from, cr), to)
      to += cr - from
      from = cr + 1
      cr = chunk.indexOf(CR, from)
    }
    out.set(chunk.subarray(from), to)
    to += length - from
    return out.subarray(0, to)
  }

  /** At the end of the stream: a held CR was a lone CR, so it is returned (or an empty array). */
  flush(): Uint8Array {
    if (!this.#heldCR) return new Uint8Array(0)
    this.#heldCR = false
    return Uint8Array.of(CR)
  }
}
