/**
 * A minimal FTP client on raw `Deno.connect` sockets: USER, PASS, TYPE I, CWD, PASV, RETR/LIST/MLSD,
 * QUIT. Small enough that hundreds of concurrent sessions cost the benchmark little, and strict
 * enough that a wrong reply code counts as a failure.
 *
 * @module
 */

/** One (possibly multi-line) reply. */
export interface Reply {
  readonly code: number
  readonly text: string
}

/** A reply other than the one expected, a timeout, or a broken connection. */
export class FtpClientError extends Error {
  override readonly name = "FtpClientError"
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const NEWLINE = 0x0a

/** What a transfer moved. */
export interface Transfer {
  readonly bytes: number
  /** Newlines seen, when asked for (listings). */
  readonly lines: number
}

/** Read `conn` to EOF, counting bytes and (optionally) newlines. */
const drain = async (conn: Deno.Conn, countLines: boolean): Promise<Transfer> => {
  const buf = new Uint8Array(256 * 1024)
  let bytes = 0
  let lines = 0
  for (let n; (n = await conn.read(buf)) !== null;) {
    bytes += n
    if (countLines) {
      for (let i = 0; i < n; i++) if (buf[i] === NEWLINE) lines++
    }
  }
  return { bytes, lines }
}

const closeQuietly = (conn: Deno.Conn | null) => {
  try {
    conn?.close()
  } catch {
    // Already closed.
  }
}

/** A control connection. Every operation fails with `FtpClientError` once the armed deadline passes. */
export class FtpClient {
  #conn: Deno.Conn
  readonly #host: string
  #pending = new Uint8Array(0)
  #readBuf = new Uint8Array(8192)
  #data: Deno.Conn | null = null
  #timer: ReturnType<typeof setTimeout> | undefined
  #timedOut = false
  #closed = false

  private constructor(conn: Deno.TcpConn, host: string) {
    this.#conn = conn
    this.#host = host
  }

  /** Connect and read the 220 greeting; the whole thing, and later operations, must finish in `timeoutMs`. */
  static async connect(host: string, port: number, timeoutMs: number): Promise<FtpClient> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const conn = await Promise.race([
      Deno.connect({ hostname: host, port }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new FtpClientError(`connect timed out after ${timeoutMs} ms`)), timeoutMs)
      }),
    ]).finally(() => clearTimeout(timer))
    const client = new FtpClient(conn, host)
    client.arm(timeoutMs)
    await client.expect(null, 220)
    return client
  }

  /** (Re)start the deadline: after `ms` the sockets are closed and pending operations fail. */
  arm(ms: number): void {
    this.disarm()
    this.#timer = setTimeout(() => {
      this.#timedOut = true
      this.close()
    }, ms)
  }

  /** Stop the deadline, e.g. for a session that is meant to sit idle. */
  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #fail(what: string, cause?: unknown): never {
    if (this.#timedOut) throw new FtpClientError(`timed out during ${what}`)
    const reason = cause instanceof Error ? `: ${cause.message}` : ""
    throw new FtpClientError(`${what} failed${reason}`)
  }

  async #readLine(): Promise<string> {
    for (;;) {
      const at = this.#pending.indexOf(NEWLINE)
      if (at >= 0) {
        const line = decoder.decode(this.#pending.subarray(0, at)).replace(/\r$/, "")
        this.#pending = this.#pending.slice(at + 1)
        return line
      }
      let n: number | null
      try {
        n = await this.#conn.read(this.#readBuf)
      } catch (error) {
        this.#fail("reading a reply", error)
      }
      if (n === null) this.#fail("reading a reply (connection closed by server)")
      const joined = new Uint8Array(this.#pending.length + n)
      joined.set(this.#pending)
      joined.set(this.#readBuf.subarray(0, n), this.#pending.length)
      this.#pending = joined
    }
  }

  /** Read one reply; a `ddd-` first line continues until a line starting `ddd `. */
  async readReply(): Promise<Reply> {
    const first = await this.#readLine()
    const code = Number(first.slice(0, 3))
    if (!/^\d{3}[ -]/.test(first) && !/^\d{3}$/.test(first)) this.#fail(`parsing reply ${JSON.stringify(first)}`)
    const lines = [first]
    if (first[3] === "-") {
      const end = `${first.slice(0, 3)} `
      for (let line = await this.#readLine();; line = await this.#readLine()) {
        lines.push(line)
        if (line.startsWith(end)) break
      }
    }
    return { code, text: lines.join("\n") }
  }

  /** Send one command line (without CRLF). */
  async send(line: string): Promise<void> {
    const bytes = encoder.encode(`${line}\r\n`)
    try {
      for (let off = 0; off < bytes.length;) off += await this.#conn.write(bytes.subarray(off))
    } catch (error) {
      this.#fail(`sending ${line.split(" ")[0]}`, error)
    }
  }

  /** Send `line` and read the reply. */
  async command(line: string): Promise<Reply> {
    await this.send(line)
    return await this.readReply()
  }

  /** Send `line` (or nothing, when null) and require a reply with code `code`. */
  async expect(line: string | null, code: number): Promise<Reply> {
    const reply = line === null ? await this.readReply() : await this.command(line)
    if (reply.code !== code) {
      const what = line === null ? "greeting" : line.startsWith("PASS ") ? "PASS ****" : line
      throw new FtpClientError(`${what}: expected ${code}, got ${JSON.stringify(reply.text)}`)
    }
    return reply
  }

  /**
   * Explicit FTPS (RFC 4217): AUTH TLS, the TLS handshake on the control connection (the server's
   * certificate checked against `caCert` for `hostname`), PBSZ 0 and PROT P.
   */
  async secure(caCert: string, hostname = "localhost"): Promise<void> {
    await this.expect("AUTH TLS", 234)
    if (this.#pending.length > 0) throw new FtpClientError("AUTH TLS: bytes after the 234 reply")
    try {
      this.#conn = await Deno.startTls(this.#conn as Deno.TcpConn, { hostname, caCerts: [caCert] })
    } catch (error) {
      this.#fail("the TLS handshake of the control connection", error)
    }
    await this.expect("PBSZ 0", 200)
    await this.expect("PROT P", 200)
  }

  /** EPSV: the passive port the server announces (on the control connection's host). */
  async epsv(): Promise<number> {
    const reply = await this.expect("EPSV", 229)
    const m = /\(([^\d])\1\1(\d+)\1\)/.exec(reply.text)
    if (m === null) throw new FtpClientError(`EPSV: no port in ${JSON.stringify(reply.text)}`)
    return Number(m[2])
  }

  /** USER and PASS. */
  async login(user: string, password: string): Promise<void> {
    const reply = await this.command(`USER ${user}`)
    if (reply.code === 230) return
    if (reply.code !== 331) throw new FtpClientError(`USER: expected 331, got ${JSON.stringify(reply.text)}`)
    await this.expect(`PASS ${password}`, 230)
  }

  /** PASV, connect to the announced port (on the control host), run `command`, read to EOF, expect 226. */
  async transfer(command: string, countLines = false): Promise<Transfer> {
    const pasv = await this.expect("PASV", 227)
    const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(pasv.text)
    if (m === null) throw new FtpClientError(`PASV: no address in ${JSON.stringify(pasv.text)}`)
    const port = Number(m[5]) * 256 + Number(m[6])
    try {
      this.#data = await Deno.connect({ hostname: this.#host, port })
    } catch (error) {
      this.#fail(`connecting to the passive port ${port}`, error)
    }
    const data = this.#data
    if (this.#closed) {
      closeQuietly(data)
      this.#fail("connecting to the passive port")
    }
    const drained = drain(data, countLines)
    drained.catch(() => {})
    try {
      let reply = await this.command(command)
      if (reply.code === 125 || reply.code === 150) reply = await this.readReply()
      if (reply.code !== 226 && reply.code !== 250) {
        throw new FtpClientError(`${command}: expected 150 then 226, got ${JSON.stringify(reply.text)}`)
      }
      try {
        return await drained
      } catch (error) {
        this.#fail(`reading the data of ${command}`, error)
      }
    } finally {
      closeQuietly(data)
      this.#data = null
    }
  }

  /** QUIT, expect 221, then wait (bounded by the deadline) for the server to close first. */
  async quit(): Promise<void> {
    await this.expect("QUIT", 221)
    try {
      while ((await this.#conn.read(this.#readBuf)) !== null);
    } catch {
      // Reset instead of FIN: the session is over either way.
    }
    this.close()
  }

  /** Close both connections and stop the deadline. */
  close(): void {
    this.disarm()
    if (this.#closed) return
    this.#closed = true
    closeQuietly(this.#data)
    closeQuietly(this.#conn)
  }
}
