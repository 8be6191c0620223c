/**
 * Splits the control connection's byte stream into command lines.
 *
 * The control connection is a Telnet NVT (RFC 959 section 4.1, RFC 854): Telnet commands are
 * removed here so that the command layer sees only text. Memory is bounded by `maxLength` plus the
 * chunks pushed but not yet framed, so a client that never sends a line end cannot grow it.
 *
 * @module
 */

const LF = 10
const CR = 13
const IAC = 255
const WILL = 251
const DONT = 254
/** The lowest Telnet command byte (SE, RFC 854); no FTP command starts with one. */
const TELNET_COMMANDS = 240

// Telnet decoding state, kept between bytes and between chunks; its value is also the number of
// bytes of an unfinished Telnet command held.
const DATA = 0
const AFTER_IAC = 1
const AFTER_OPTION = 2

/** What {@link CommandFramer.next} found: a complete line, or notice that an overlong line was dropped. */
export type Framed = { readonly kind: "line"; readonly text: string } | { readonly kind: "tooLong" }

const TOO_LONG: Framed = { kind: "tooLong" }

/** Line bytes held before the buffer grows; most command lines fit, and idle sessions keep this little. */
const INITIAL_LINE_BYTES = 128

// Decoding a whole line (no `stream` option) keeps no state between calls, so one decoder serves all framers.
const decoder = new TextDecoder("utf-8", { fatal: false })

/**
 * Frames command lines out of received bytes.
 *
 * Lines end with CRLF or a bare LF (the CR is dropped). `IAC IAC` is a 0xFF data byte; `IAC
 * WILL|WONT|DO|DONT <option>` and `IAC <command>` are dropped, even when split across chunks, and
 * so are bytes 0xF0-0xFF at the start of a line (Telnet bytes left over when a Synch's urgent
 * byte was taken out of the stream). Text is decoded as UTF-8 with replacement characters
 * (RFC 2640).
 *
 * @example
 * ```ts
 * import { CommandFramer } from "./framer.ts"
 * const framer = new CommandFramer()
 * framer.push(new TextEncoder().encode("USER bob\r\nPA"))
 * console.log(framer.next()) // { kind: "line", text: "USER bob" }
 * console.log(framer.next()) // undefined: "PA" waits for its line end
 * console.log(framer.buffered) // 2
 * ```
 */
export class CommandFramer {
  readonly #max: number
  #line: Uint8Array
  #length = 0
  #pendingCR = false
  #telnet: typeof DATA | typeof AFTER_IAC | typeof AFTER_OPTION = DATA
  #discarding = false
  readonly #queue: Uint8Array[] = []
  #offset = 0
  #queued = 0

  /** `maxLength` is the longest accepted line in bytes, excluding its terminator (default 2048). */
  constructor(maxLength: number = 2048) {
    if (!Number.isSafeInteger(maxLength) || maxLength < 1) {
      throw new RangeError(`maxLength must be a positive integer, got ${maxLength}`)
    }
    this.#max = maxLength
    this.#line = new Uint8Array(Math.min(maxLength, INITIAL_LINE_BYTES))
  }

  /**
   * Append received bytes. The chunk is kept, not copied (a copy per read is garbage per command,
   * and a flood of one endless line would be all garbage): do not change its bytes until `next()`
   * has returned `undefined`, which means every pushed byte has been consumed.
   */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return
    this.#queue.push(chunk)
    this.#queued += chunk.length
  }

  /**
   * The next complete line, or `undefined` when more bytes are needed. A line longer than
   * `maxLength` is reported once as `tooLong` as soon as it overflows; the rest of it, up to its
   * LF, is dropped.
   */
  next(): Framed | undefined {
    let line = this.#line
    const max = this.#max
    while (this.#queue.length > 0) {
      const chunk = this.#queue[0]
      const start = this.#offset
      const end = chunk.length
      let i = start
      let result: Framed | undefined
      while (i < end && result === undefined) {
        const b = chunk[i++]
        if (this.#telnet === DATA) {
          if (b === IAC) {
            this.#telnet = AFTER_IAC
            continue
          }
        } else if (this.#telnet === AFTER_IAC) {
          // A byte below 240 is no Telnet command: the Data Mark of a Synch was sent as urgent data
          // and the kernel took it out of the stream (Deno cannot set SO_OOBINLINE). Drop the IAC
          // alone so that "IAC IP IAC <DM> ABOR" still reads as ABOR (RFC 959 4.1.3).
          if (b !== IAC && b >= TELNET_COMMANDS) {
            // RFC 854: WILL/WONT/DO/DONT carry one option byte; every other command stands alone.
            this.#telnet = b >= WILL && b <= DONT ? AFTER_OPTION : DATA
            continue
          }
          this.#telnet = DATA
        } else {
          this.#telnet = DATA
          continue
        }
        if (this.#discarding) {
          if (b === LF) this.#discarding = false
          continue
        }
        // What is left of a Synch whose urgent byte the kernel took out of the stream: BSD ftp
        // sends "IAC IP IAC" with the last IAC urgent, which leaves "DM ABOR"; an urgent IP leaves
        // "IAC IAC DM ABOR" (a 0xFF data byte, then DM). A command verb never starts with such a
        // byte, so they are dropped at the start of a line (RFC 959 4.1.3: ABOR, STAT and QUIT
        // must be recognised however the client sends the Synch).
        if (this.#length === 0 && !this.#pendingCR && b >= TELNET_COMMANDS) continue
        if (b === LF) {
          result = { kind: "line", text: decoder.decode(line.subarray(0, this.#length)) }
          this.#length = 0
          this.#pendingCR = false
          continue
        }
        if (this.#pendingCR) {
          // A CR not followed by LF is data.
          this.#pendingCR = false
          if (this.#length === max) {
            result = this.#overflow()
            continue
          }
          if (this.#length === line.length) line = this.#grow()
          line[this.#length++] = CR
        }
        if (b === CR) {
          this.#pendingCR = true
        } else if (this.#length === max) {
          result = this.#overflow()
        } else {
          if (this.#length === line.length) line = this.#grow()
          line[this.#length++] = b
        }
      }
      this.#queued -= i - start
      if (i === end) {
        this.#queue.shift()
        this.#offset = 0
      } else {
        this.#offset = i
      }
      if (result !== undefined) return result
    }
    return undefined
  }

  /**
   * Bytes received but not yet returned as a line. After `AUTH TLS` this must be 0: anything
   * already buffered was sent in plaintext and must not be run as if it came over TLS.
   */
  get buffered(): number {
    return this.#length + (this.#pendingCR ? 1 : 0) + this.#telnet + this.#queued
  }

  /** Double the line buffer, up to `maxLength`; called only when it is full and below the limit. */
  #grow(): Uint8Array {
    const bigger = new Uint8Array(Math.min(this.#max, this.#line.length * 2))
    bigger.set(this.#line)
    this.#line = bigger
    return bigger
  }

  #overflow(): Framed {
    this.#length = 0
    this.#pendingCR = false
    this.#discarding = true
    return TOO_LONG
  }
}
