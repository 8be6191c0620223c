/**
 * The workloads of `deno task bench`. A workload warms each server up once, untimed, then measures
 * one repetition at a time: `bench.ts` runs every server under test at once and takes one
 * repetition on each in turn, so that the ratios compare samples taken next to each other. Every
 * loop is bounded in count and in time, and every client has a timeout.
 *
 * @module
 */

import { hashPassword } from "../../src/auth/passwords.ts"
import { FtpClient } from "./ftp_client.ts"
import {
  CLK_TCK,
  ftpdSpec,
  HOST,
  PASSWORD,
  pickPorts,
  type RunningServer,
  sampleProc,
  type ServerSpec,
  spawnTracked,
  startServer,
  tail,
  type TlsFiles,
  USER,
} from "./servers.ts"

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

/** The knobs `--quick`, `--size` and `--reps` set. */
export interface BenchConfig {
  readonly quick: boolean
  readonly reps: number
  /** Bytes of the single-file RETR and STOR. */
  readonly size: number
  readonly multiClients: number
  /** Bytes each of the concurrent clients downloads. */
  readonly multiSize: number
  readonly burstClients: number
  readonly burstFileSize: number
  readonly loginSeconds: number
  readonly loginWorkers: number
  readonly listFiles: number
  readonly listingsPerRep: number
  /** Idle sessions held open, in steps: the memory rows are read at each count. */
  readonly idleCounts: ReadonlyArray<number>
  /** `performance.now()` after which no new measurement starts. */
  readonly deadline: number
}

/** Files every server serves: `big.bin` (size), `multi.bin`, `small.bin`, and `many/` with listFiles files. */
export interface Fixture {
  readonly root: string
  readonly onTmpfs: boolean
  /** The self-signed certificate for the FTPS rows, or null (and why) when openssl could not make one. */
  readonly tls: TlsFiles | null
  readonly tlsError?: string
  /** A user file (`--users`) of {@link USER_FILE_USERS} argon2id users, the bench's account among them. */
  readonly usersFile: string
}

/** Users in the fixture's user file. */
export const USER_FILE_USERS = 10_000

/** A measurement row: what it is, its unit, which direction is better, and the target for ftpd. */
export interface RowSpec {
  readonly key: string
  readonly label: string
  readonly unit: string
  readonly better: "higher" | "lower"
  /** Target on ftpd/pyftpdlib (`ratio`) or on ftpd's own value (`absolute`). */
  readonly target?: { readonly kind: "ratio" | "absolute"; readonly op: "<=" | ">=" | "=="; readonly value: number }
  /** No ftpd/pyftpdlib ratio: the row measures something else in each server's round (a reference). */
  readonly noRatio?: boolean
}

/** Samples per row key, plus notes such as the first failure messages. */
export interface WorkloadResult {
  readonly samples: Record<string, number[]>
  readonly notes: string[]
}

/** One repetition on one server: a value per row key, plus notes such as failure messages. */
export interface Measured {
  readonly values: Record<string, number>
  readonly notes?: ReadonlyArray<string>
}

interface WorkloadBase {
  readonly name: string
  /** Run each repetition on a newly started server (for memory, which a process does not give back). */
  readonly restartEachRep?: boolean
  /**
   * The server is started with FTPS on (`tls`), or with its users from the fixture's user file
   * (`usersFile`); the workload needs socat (`socat`); it measures something of ftpd's own, with no
   * pyftpdlib counterpart (`ftpdOnly`).
   */
  readonly needs?: {
    readonly tls?: boolean
    readonly socat?: boolean
    readonly usersFile?: boolean
    readonly ftpdOnly?: boolean
    /** Started so that `RunningServer.gc` can run a full garbage collection in it. */
    readonly gc?: boolean
  }
  /**
   * Only ftpd serves this workload's storage: its server gets these flags (and environment) after
   * the usual ones; pyftpdlib gets a note instead of a column.
   */
  readonly storage?: (fixture: Fixture) => Promise<{ readonly args: string[]; readonly env?: Record<string, string> }>
  readonly rows: (config: BenchConfig) => RowSpec[]
}

/** A workload measured side by side: `bench.ts` calls `measure` on each server in turn, once per repetition. */
export interface PairedWorkload extends WorkloadBase {
  /**
   * Untimed work on a newly started server (the first run after a start pays for warming up).
   * Resolves with a note instead when this server cannot take part (a known limitation of it).
   */
  readonly warm?: (server: RunningServer, fixture: Fixture, config: BenchConfig) => Promise<string | undefined>
  readonly measure: (server: RunningServer, fixture: Fixture, config: BenchConfig) => Promise<Measured>
}

/** A workload that runs its own servers side by side (all its repetitions at once). */
export interface OwnWorkload extends WorkloadBase {
  readonly run: (server: RunningServer, fixture: Fixture, config: BenchConfig) => Promise<WorkloadResult>
}

export type Workload = PairedWorkload | OwnWorkload

/** Thrown when the total wall-clock guard has passed; the remaining workloads are skipped. */
export class TimeGuardError extends Error {
  override readonly name = "TimeGuardError"
}

export const guard = (config: BenchConfig) => {
  if (performance.now() > config.deadline) throw new TimeGuardError("total time guard reached")
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** `n` as "64 MiB", "1 GiB", "10 KiB". */
export const formatSize = (n: number): string =>
  n >= GiB && n % GiB === 0
    ? `${n / GiB} GiB`
    : n >= MiB && n % MiB === 0
    ? `${n / MiB} MiB`
    : n >= KiB && n % KiB === 0
    ? `${n / KiB} KiB`
    : `${n} B`

const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

/** Write `size` bytes made of one random 1 MiB block repeated (the content cannot be compressed away). */
const writeFile = async (path: string, size: number, block: Uint8Array) => {
  using file = await Deno.open(path, { write: true, create: true, truncate: true })
  for (let written = 0; written < size;) {
    const chunk = block.subarray(0, Math.min(block.length, size - written))
    for (let off = 0; off < chunk.length;) off += await file.write(chunk.subarray(off))
    written += chunk.length
  }
}

/**
 * A self-signed certificate for localhost valid one day, outside the served root. `CA:FALSE` and a
 * subjectAltName because rustls (Deno.startTls, the bench's own control connection) refuses a CA
 * certificate as a server's and ignores the CN.
 */
const makeCertificate = (dir: string): TlsFiles | { error: string } => {
  const certfile = `${dir}/cert.pem`
  const keyfile = `${dir}/key.pem`
  try {
    const out = new Deno.Command("openssl", {
      args: [
        ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"],
        ...["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"],
        ...["-keyout", keyfile, "-out", certfile],
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).outputSync()
    if (out.code !== 0) return { error: `openssl req failed: ${new TextDecoder().decode(out.stderr).trim()}` }
    return { certfile, keyfile, cert: Deno.readTextFileSync(certfile) }
  } catch (error) {
    return { error: `openssl is not installed (${error instanceof Error ? error.message : error})` }
  }
}

/** Create the served tree in a fresh directory under /dev/shm (tmpfs), or the system temp dir without it. */
export const createFixture = async (config: BenchConfig): Promise<Fixture> => {
  let dir: string
  let onTmpfs = true
  try {
    dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "ftpd-bench-" })
  } catch {
    dir = await Deno.makeTempDir({ prefix: "ftpd-bench-" })
    onTmpfs = false
  }
  const tls = makeCertificate(dir)
  const usersFile = `${dir}/users.toml`
  const fixture: Fixture = "error" in tls
    ? { root: `${dir}/root`, onTmpfs, tls: null, tlsError: tls.error, usersFile }
    : { root: `${dir}/root`, onTmpfs, tls, usersFile }
  const { root } = fixture
  try {
    await Deno.mkdir(`${root}/many`, { recursive: true })
    const block = new Uint8Array(MiB)
    for (let off = 0; off < block.length; off += 65536) crypto.getRandomValues(block.subarray(off, off + 65536))
    await writeFile(`${root}/big.bin`, config.size, block)
    await writeFile(`${root}/multi.bin`, config.multiSize, block)
    await writeFile(`${root}/small.bin`, config.burstFileSize, block)
    const empty = new Uint8Array(0)
    for (let i = 0; i < config.listFiles; i++) {
      Deno.writeFileSync(`${root}/many/file-${String(i).padStart(5, "0")}.dat`, empty)
    }
    await writeUsersFile(usersFile, root)
  } catch (error) {
    removeFixture(fixture)
    throw error
  }
  return fixture
}

/**
 * The user file of the `user-file logins` row: the bench's account and 9,999 others, every hash
 * argon2id with `ftpd users`' parameters. The others share one hash (of a random password): making
 * 10,000 would take minutes and measure nothing more, since a login checks one hash.
 */
const writeUsersFile = async (path: string, home: string) => {
  const mine = await hashPassword(PASSWORD)
  const others = await hashPassword(crypto.randomUUID())
  const table = (name: string, hash: string) =>
    `[users.${name}]\npassword = "${hash}"\nhome = "${home}"\nperm = "elr"\n`
  const tables = [table(USER, mine)]
  for (let i = 1; i < USER_FILE_USERS; i++) tables.push(table(`user${String(i).padStart(5, "0")}`, others))
  await Deno.writeTextFile(path, tables.join("\n"), { mode: 0o600 })
}

/** Remove the fixture's directory (the parent of its root). */
export const removeFixture = (fixture: Fixture): void => {
  try {
    Deno.removeSync(fixture.root.replace(/\/root$/, ""), { recursive: true })
  } catch {
    // Already gone.
  }
}

export const url = (server: RunningServer, path: string) => `ftp://${USER}:${PASSWORD}@${HOST}:${server.port}/${path}`

export interface CurlResult {
  readonly bytes: number
  /** Seconds from sending RETR/STOR to the final reply: curl's time_total - time_pretransfer. */
  readonly transferSeconds: number
}

/** Run curl with `args` and a `-w` that reports bytes and timings; fail on a non-zero exit or short transfer. */
export const curl = async (args: string[], maxSeconds: number, expectBytes: number): Promise<CurlResult> => {
  const child = spawnTracked("curl", {
    args: [
      ...["-sS", "--max-time", String(Math.ceil(maxSeconds))],
      ...["-w", "%{size_download} %{size_upload} %{time_pretransfer} %{time_total}"],
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
  const out = await child.output()
  const text = new TextDecoder().decode(out.stdout).trim()
  if (out.code !== 0) {
    throw new Error(`curl exited with ${out.code}: ${new TextDecoder().decode(out.stderr).trim() || text}`)
  }
  const [down, up, pre, total] = text.split(" ").map(Number)
  const bytes = Math.max(down, up)
  if (bytes !== expectBytes) throw new Error(`curl moved ${bytes} bytes, expected ${expectBytes}`)
  return { bytes, transferSeconds: Math.max(total - pre, 1e-6) }
}

/** Seconds a curl transfer of `bytes` may take: 20 MiB/s at worst, plus slack. */
export const curlLimit = (bytes: number) => 30 + bytes / (20 * MiB)

/** curl's flags for explicit FTPS with PROT P (AUTH TLS, PBSZ 0, PROT P), the self-signed certificate accepted. */
const CURL_TLS = ["--ssl-reqd", "-k"]

/**
 * pyftpdlib (1.5.x) resets a PROT P data connection whose client starts TLS before the transfer
 * command, which curl does; curl then falls back to PASV and fails with "(13) Bad PASV/EPSV
 * response". That is a known pyftpdlib limitation (issue 3), not a bench error: it becomes a note,
 * and pyftpdlib's PROT P figures come from the socat rows, whose TLS starts after the command.
 */
const knownTlsFailure = async (
  server: RunningServer,
  tls: boolean,
  first: () => Promise<unknown>,
): Promise<string | undefined> => {
  try {
    await first()
    return undefined
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    if (!tls || server.name !== "pyftpdlib" || !message.includes("(13)")) throw error
    return `curl --ssl-reqd fails (${message.replace(/^curl exited with \d+: /, "")}): pyftpdlib resets a PROT P ` +
      "data connection whose TLS starts before RETR/STOR, as curl's does; see the socat rows for its PROT P figures"
  }
}

const makeRetr = (tls: boolean): PairedWorkload => {
  const key = tls ? "ftps_retr" : "retr"
  const what = tls ? "PROT P RETR" : "RETR"
  const args = (server: RunningServer) => [...(tls ? CURL_TLS : []), "-o", "/dev/null", url(server, "big.bin")]
  return {
    name: tls ? "retr-tls" : "retr",
    ...(tls ? { needs: { tls: true } } : {}),
    rows: (c) => [
      {
        key: `${key}_mibs`,
        label: `${what} ${formatSize(c.size)}, 1 client${tls ? " (curl)" : ""}`,
        unit: "MiB/s",
        better: "higher",
        // Issue 3: PROT P RETR >= 1.2 GiB/s; issue 5: plain RETR >= pyftpdlib.
        target: tls ? { kind: "absolute", op: ">=", value: 1228.8 } : { kind: "ratio", op: ">=", value: 1.0 },
      },
      {
        key: `${key}_cpu`,
        label: `${what} ${formatSize(c.size)}, server CPU`,
        unit: "CPU-s/GiB",
        better: "lower",
        ...(tls ? {} : { target: { kind: "ratio", op: "<=", value: 1.0 } as const }),
      },
    ],
    warm: (server, _fixture, config) =>
      knownTlsFailure(server, tls, () => curl(args(server), curlLimit(config.size), config.size)),
    measure: async (server, _fixture, config) => {
      const before = server.sample()
      const r = await curl(args(server), curlLimit(config.size), config.size)
      const after = server.sample()
      return {
        values: {
          [`${key}_mibs`]: r.bytes / MiB / r.transferSeconds,
          [`${key}_cpu`]: (after.cpuSeconds - before.cpuSeconds) / (r.bytes / GiB),
        },
      }
    },
  }
}

const makeStor = (tls: boolean): PairedWorkload => {
  const key = tls ? "ftps_stor" : "stor"
  const what = tls ? "PROT P STOR" : "STOR"
  const name = tls ? "upload-tls.bin" : "upload.bin"
  const upload = (server: RunningServer, fixture: Fixture, config: BenchConfig) =>
    curl(
      [...(tls ? CURL_TLS : []), "-T", `${fixture.root}/big.bin`, url(server, name)],
      curlLimit(config.size),
      config.size,
    )
  return {
    name: tls ? "stor-tls" : "stor",
    ...(tls ? { needs: { tls: true } } : {}),
    rows: (c) => [
      {
        key: `${key}_mibs`,
        label: `${what} ${formatSize(c.size)}, 1 client${tls ? " (curl)" : ""}`,
        unit: "MiB/s",
        better: "higher",
        ...(tls ? {} : { target: { kind: "ratio", op: ">=", value: 1.4 } as const }),
      },
      {
        key: `${key}_cpu`,
        label: `${what} ${formatSize(c.size)}, server CPU`,
        unit: "CPU-s/GiB",
        better: "lower",
        ...(tls ? {} : { target: { kind: "ratio", op: "<=", value: 0.7 } as const }),
      },
    ],
    // Untimed: the first upload into fresh tmpfs pages was 2-4x slower in every trial, for either server.
    warm: async (server, fixture, config) => {
      const note = await knownTlsFailure(server, tls, () => upload(server, fixture, config))
      await Deno.remove(`${fixture.root}/${name}`).catch(() => {})
      return note
    },
    measure: async (server, fixture, config) => {
      const uploaded = `${fixture.root}/${name}`
      try {
        const before = server.sample()
        const r = await upload(server, fixture, config)
        const after = server.sample()
        const stored = (await Deno.stat(uploaded)).size
        if (stored !== config.size) throw new Error(`STOR left ${stored} bytes on disk, expected ${config.size}`)
        return {
          values: {
            [`${key}_mibs`]: r.bytes / MiB / r.transferSeconds,
            [`${key}_cpu`]: (after.cpuSeconds - before.cpuSeconds) / (r.bytes / GiB),
          },
        }
      } finally {
        await Deno.remove(uploaded).catch(() => {})
      }
    },
  }
}

/** `ftplib_retr.py`: RETR read by Python's ftplib with a 1 MiB `recv_into` loop, as many Python programs do. */
const retrFtplib: PairedWorkload = {
  name: "retr-ftplib",
  rows: (c) => [
    {
      key: "retr_py_mibs",
      label: `RETR ${formatSize(c.size)}, 1 client (Python ftplib, 1 MiB recv_into)`,
      unit: "MiB/s",
      better: "higher",
      target: { kind: "ratio", op: ">=", value: 1.0 },
    },
    {
      key: "retr_py_cpu",
      label: `RETR ${formatSize(c.size)} (Python ftplib), server CPU`,
      unit: "CPU-s/GiB",
      better: "lower",
      target: { kind: "ratio", op: "<=", value: 1.0 },
    },
  ],
  warm: async (server, _fixture, config) => {
    await ftplibRetr(server, config)
    return undefined
  },
  measure: async (server, _fixture, config) => {
    const before = server.sample()
    const seconds = await ftplibRetr(server, config)
    const after = server.sample()
    return {
      values: {
        retr_py_mibs: config.size / MiB / seconds,
        retr_py_cpu: (after.cpuSeconds - before.cpuSeconds) / (config.size / GiB),
      },
    }
  },
}

/** Run `ftplib_retr.py` on `big.bin`: seconds from RETR to its final reply. */
const ftplibRetr = async (server: RunningServer, config: BenchConfig): Promise<number> => {
  const script = new URL("./ftplib_retr.py", import.meta.url).pathname
  const child = spawnTracked("python3", {
    args: [script, HOST, String(server.port), USER, PASSWORD, "big.bin"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
  const timer = setTimeout(() => child.kill("SIGKILL"), curlLimit(config.size) * 1000)
  try {
    const out = await child.output()
    if (out.code !== 0) {
      throw new Error(`ftplib_retr.py exited with ${out.code}: ${decode(out.stderr).trim().slice(-400)}`)
    }
    const [bytes, seconds] = decode(out.stdout).trim().split(" ").map(Number)
    if (bytes !== config.size) throw new Error(`ftplib_retr.py read ${bytes} bytes, expected ${config.size}`)
    return seconds
  } finally {
    clearTimeout(timer)
  }
}

const retrMany: PairedWorkload = {
  name: "retr-concurrent",
  rows: (c) => [
    {
      key: "multi_mibs",
      label: `RETR ${c.multiClients} clients × ${formatSize(c.multiSize)}`,
      unit: "MiB/s total",
      better: "higher",
    },
    {
      key: "multi_cpu",
      label: `RETR ${c.multiClients} clients, server CPU`,
      unit: "CPU-s/GiB",
      better: "lower",
    },
  ],
  warm: async (server, _fixture, config) => {
    await curl(["-o", "/dev/null", url(server, "multi.bin")], curlLimit(config.multiSize), config.multiSize)
    return undefined
  },
  measure: async (server, _fixture, config) => {
    const total = config.multiClients * config.multiSize
    const before = server.sample()
    const t0 = performance.now()
    const results = await Promise.allSettled(
      Array.from(
        { length: config.multiClients },
        () => curl(["-o", "/dev/null", url(server, "multi.bin")], curlLimit(total), config.multiSize),
      ),
    )
    const seconds = (performance.now() - t0) / 1000
    const after = server.sample()
    const failed = results.filter((r) => r.status === "rejected")
    if (failed.length > 0) {
      throw new Error(`${failed.length} of ${config.multiClients} downloads failed: ${failed[0].reason}`)
    }
    return {
      values: { multi_mibs: total / MiB / seconds, multi_cpu: (after.cpuSeconds - before.cpuSeconds) / (total / GiB) },
    }
  },
}

/** Remember up to 3 distinct error messages. */
const collectErrors = () => {
  const seen = new Map<string, number>()
  return {
    add: (error: unknown) => {
      const text = error instanceof Error ? error.message : String(error)
      seen.set(text, (seen.get(text) ?? 0) + 1)
    },
    notes: (prefix: string) => [...seen].slice(0, 3).map(([text, count]) => `${prefix}: ${count}× ${text}`),
  }
}

const BURST_TIMEOUT_MS = 30_000

/** connect, login, TYPE I, RETR small.bin, QUIT: one short session as a client sees it. */
const shortSession = async (server: RunningServer, size: number, timeoutMs: number) => {
  let client: FtpClient | null = null
  try {
    client = await FtpClient.connect(HOST, server.port, timeoutMs)
    await client.login(USER, PASSWORD)
    await client.expect("TYPE I", 200)
    const got = await client.transfer("RETR small.bin")
    if (got.bytes !== size) throw new Error(`RETR small.bin: got ${got.bytes} bytes, expected ${size}`)
    await client.quit()
  } finally {
    client?.close()
  }
}

const burst: PairedWorkload = {
  name: "burst",
  rows: (c) => [
    {
      key: "burst_failures",
      label: `${c.burstClients} clients at once: failures`,
      unit: "count",
      better: "lower",
      target: { kind: "absolute", op: "==", value: 0 },
    },
    {
      key: "burst_total",
      label: `${c.burstClients} clients at once: total`,
      unit: "ms",
      better: "lower",
      target: { kind: "ratio", op: "<=", value: 1.5 },
    },
    { key: "burst_p50", label: `${c.burstClients} clients at once: p50`, unit: "ms", better: "lower" },
    { key: "burst_p99", label: `${c.burstClients} clients at once: p99`, unit: "ms", better: "lower" },
  ],
  // One session first, so that no server pays for a cold start inside the measurement.
  warm: async (server, _fixture, config) => {
    await shortSession(server, config.burstFileSize, BURST_TIMEOUT_MS)
    return undefined
  },
  measure: async (server, _fixture, config) => {
    const errors = collectErrors()
    const t0 = performance.now()
    const latencies = await Promise.all(
      Array.from({ length: config.burstClients }, async () => {
        const start = performance.now()
        try {
          await shortSession(server, config.burstFileSize, BURST_TIMEOUT_MS)
          return performance.now() - start
        } catch (error) {
          errors.add(error)
          return null
        }
      }),
    )
    const total = performance.now() - t0
    const ok = latencies.filter((ms): ms is number => ms !== null)
    // The closed sessions' sockets settle before the next server's turn.
    await sleep(200)
    return {
      values: {
        burst_failures: config.burstClients - ok.length,
        burst_total: total,
        burst_p50: ok.length > 0 ? percentile(ok, 50) : NaN,
        burst_p99: ok.length > 0 ? percentile(ok, 99) : NaN,
      },
      notes: errors.notes("failed session"),
    }
  },
}

/** connect, login, QUIT. */
const loginOnce = async (server: RunningServer, timeoutMs: number) => {
  let client: FtpClient | null = null
  try {
    client = await FtpClient.connect(HOST, server.port, timeoutMs)
    await client.login(USER, PASSWORD)
    await client.quit()
  } finally {
    client?.close()
  }
}

/** connect+login+QUIT in a loop from several clients: logins per second and server CPU per login. */
const makeLogins = (usersFile: boolean): PairedWorkload => {
  const what = usersFile ? `user file of ${USER_FILE_USERS} argon2id users` : "-u/-P"
  const key = usersFile ? "file_login" : "login"
  return {
    name: usersFile ? "user-file-logins" : "logins",
    ...(usersFile ? { needs: { usersFile: true } } : {}),
    rows: (c) => [
      {
        key: `${key}_rate`,
        label: `connect+login+QUIT (${what}), ${c.loginWorkers} clients looping, ${c.loginSeconds} s`,
        unit: "logins/s",
        better: "higher",
      },
      {
        key: `${key}_cpu`,
        label: `connect+login+QUIT (${what}), server CPU`,
        unit: "CPU-ms/login",
        better: "lower",
        ...(usersFile ? {} : { target: { kind: "ratio" as const, op: "<=" as const, value: 1.0 } }),
      },
      { key: `${key}_failures`, label: `connect+login+QUIT (${what}): failures`, unit: "count", better: "lower" },
      {
        // The client shares the machine's cores with the server: what it spends bounds the login rate.
        key: `${key}_client_cpu`,
        label: `connect+login+QUIT (${what}), the bench's own CPU (the clients)`,
        unit: "CPU-ms/login",
        better: "lower",
        noRatio: true,
      },
    ],
    warm: async (server) => {
      for (let i = 0; i < 20; i++) await loginOnce(server, LOGIN_TIMEOUT_MS)
      return undefined
    },
    measure: async (server, _fixture, config) => {
      const errors = collectErrors()
      const { rate, cpu, clientCpu, failed } = await loginRound(server, config, errors)
      return {
        values: {
          [`${key}_rate`]: rate,
          [`${key}_cpu`]: cpu,
          [`${key}_failures`]: failed,
          [`${key}_client_cpu`]: clientCpu,
        },
        notes: errors.notes("failed login"),
      }
    },
  }
}

const logins = makeLogins(false)
const userFileLogins = makeLogins(true)

const LOGIN_TIMEOUT_MS = 10_000

/** `loginWorkers` clients logging in and out for `loginSeconds`: logins/s and server CPU-ms per login. */
const loginRound = async (server: RunningServer, config: BenchConfig, errors: ReturnType<typeof collectErrors>) => {
  const maxPerWorker = 1_000_000
  let done = 0
  let failed = 0
  const before = server.sample()
  const clientBefore = sampleProc(Deno.pid)
  const t0 = performance.now()
  const stopAt = t0 + config.loginSeconds * 1000
  await Promise.all(
    Array.from({ length: config.loginWorkers }, async () => {
      for (let i = 0; i < maxPerWorker && performance.now() < stopAt; i++) {
        try {
          await loginOnce(server, LOGIN_TIMEOUT_MS)
          done++
        } catch (error) {
          failed++
          errors.add(error)
        }
      }
    }),
  )
  const seconds = (performance.now() - t0) / 1000
  const after = server.sample()
  const clientAfter = sampleProc(Deno.pid)
  return {
    rate: done / seconds,
    cpu: done > 0 ? ((after.cpuSeconds - before.cpuSeconds) * 1000) / done : NaN,
    clientCpu: done > 0 ? ((clientAfter.cpuSeconds - clientBefore.cpuSeconds) * 1000) / done : NaN,
    failed,
  }
}

/** The ftpd variants the monitoring rows compare: as started by the bench, with --metrics, with traces. */
const MONITORING_VARIANTS = ["off", "metrics", "tracing"] as const

/**
 * What metrics and traces cost: logins/s and RETR CPU of ftpd with neither, with `--metrics`
 * (scraped once per repetition, as Prometheus would), and with traces exported to an OTLP sink in
 * this process. The three servers run side by side and are measured in turn within each
 * repetition, so that the machine's drift hits them alike.
 */
const monitoring: OwnWorkload = {
  name: "monitoring",
  needs: { ftpdOnly: true },
  rows: (c) => [
    ...MONITORING_VARIANTS.map((variant) => ({
      key: `monitoring_login_rate_${variant}`,
      label: `connect+login+QUIT, ${variant === "off" ? "no metrics, no traces" : variant}`,
      unit: "logins/s",
      better: "higher" as const,
    })),
    {
      key: "monitoring_login_metrics_ratio",
      label: "  logins/s with metrics / without",
      unit: "x",
      better: "higher",
      // Issue 15: metrics cost under 5% of the login rate.
      target: { kind: "absolute", op: ">=", value: 0.95 },
      noRatio: true,
    },
    {
      key: "monitoring_login_tracing_ratio",
      label: "  logins/s with traces / without",
      unit: "x",
      better: "higher",
      noRatio: true,
    },
    ...MONITORING_VARIANTS.map((variant) => ({
      key: `monitoring_login_cpu_${variant}`,
      label: `connect+login+QUIT server CPU, ${variant === "off" ? "no metrics, no traces" : variant}`,
      unit: "CPU-ms/login",
      better: "lower" as const,
    })),
    ...MONITORING_VARIANTS.map((variant) => ({
      key: `monitoring_retr_cpu_${variant}`,
      label: `RETR ${formatSize(c.size)} server CPU, ${variant === "off" ? "no metrics, no traces" : variant}`,
      unit: "CPU-s/GiB",
      better: "lower" as const,
    })),
  ],
  run: async (off, fixture, config) => {
    const sink = Deno.serve({ hostname: HOST, port: 0, onListen: () => {} }, async (request) => {
      await request.body?.cancel()
      return new Response("{}", { headers: { "content-type": "application/json" } })
    })
    const started: RunningServer[] = []
    const errors = collectErrors()
    try {
      const variant = (flags: string[], env: string[]): ServerSpec => ({
        name: "ftpd",
        argv: (
          port,
          root,
          passive,
        ) => [...(env.length > 0 ? ["env", ...env] : []), ...ftpdSpec.argv(port, root, passive), ...flags],
      })
      const log = (name: string) => `${fixture.root}/../ftpd-monitoring-${name}.log`
      const metrics = await startServer(variant(["--metrics", `${HOST}:0`], []), fixture.root, log("metrics"))
      started.push(metrics)
      const tracing = await startServer(
        variant([], [`OTEL_EXPORTER_OTLP_ENDPOINT=http://${HOST}:${sink.addr.port}`, "OTEL_BSP_SCHEDULE_DELAY=1000"]),
        fixture.root,
        log("tracing"),
      )
      started.push(tracing)
      const metricsPort = Number(
        /Prometheus text on http:\/\/[^:]+:(\d+)\/metrics/.exec(tail(metrics.logPath, 100_000))?.[1],
      )
      if (!Number.isInteger(metricsPort)) throw new Error("ftpd --metrics logged no metrics address")
      const servers = { off, metrics, tracing }
      const samples: Record<string, number[]> = {}
      const push = (key: string, value: number) => (samples[key] ??= []).push(value)
      for (const server of Object.values(servers)) {
        for (let i = 0; i < 20; i++) await loginOnce(server, LOGIN_TIMEOUT_MS)
      }
      const args = (server: RunningServer) => ["-o", "/dev/null", url(server, "big.bin")]
      for (const server of Object.values(servers)) await curl(args(server), curlLimit(config.size), config.size)
      for (let rep = 0; rep < config.reps; rep++) {
        guard(config)
        const rates: Record<string, number> = {}
        // The order rotates, as between the servers of the other workloads.
        const order = MONITORING_VARIANTS.map((_, i) => MONITORING_VARIANTS[(i + rep) % MONITORING_VARIANTS.length])
        for (const name of order) {
          const { rate, cpu } = await loginRound(servers[name], config, errors)
          rates[name] = rate
          push(`monitoring_login_rate_${name}`, rate)
          push(`monitoring_login_cpu_${name}`, cpu)
        }
        push("monitoring_login_metrics_ratio", rates.metrics / rates.off)
        push("monitoring_login_tracing_ratio", rates.tracing / rates.off)
        for (const name of order) {
          const server = servers[name]
          const before = server.sample()
          const r = await curl(args(server), curlLimit(config.size), config.size)
          push(`monitoring_retr_cpu_${name}`, (server.sample().cpuSeconds - before.cpuSeconds) / (r.bytes / GiB))
        }
        const scraped = await fetch(`http://${HOST}:${metricsPort}/metrics`)
        if (!(await scraped.text()).includes("ftpd_logins_total")) throw new Error("/metrics has no logins")
      }
      return { samples, notes: errors.notes("failed login") }
    } finally {
      for (const server of started) await server.stop()
      await sink.shutdown()
    }
  },
}

/** A logged-in client in `many/`, for `work`, then QUIT. */
const inMany = async (server: RunningServer, work: (client: FtpClient) => Promise<void>) => {
  const client = await FtpClient.connect(HOST, server.port, LISTING_TIMEOUT_MS)
  try {
    await client.login(USER, PASSWORD)
    await client.expect("CWD many", 250)
    await work(client)
    client.arm(LISTING_TIMEOUT_MS)
    await client.quit()
  } finally {
    client.close()
  }
}

const LISTING_TIMEOUT_MS = 60_000

/** One LIST or MLSD of `many/`, every line read. */
const listMany = async (client: FtpClient, command: "LIST" | "MLSD", config: BenchConfig) => {
  client.arm(LISTING_TIMEOUT_MS)
  const got = await client.transfer(command, true)
  if (got.lines < config.listFiles) {
    throw new Error(`${command} returned ${got.lines} lines for ${config.listFiles} files`)
  }
}

const listings: PairedWorkload = {
  name: "listings",
  rows: (c) => [
    {
      key: "list_ms",
      label: `LIST of ${c.listFiles} files`,
      unit: "ms",
      better: "lower",
      target: { kind: "ratio", op: "<=", value: 0.5 },
    },
    {
      key: "mlsd_ms",
      label: `MLSD of ${c.listFiles} files`,
      unit: "ms",
      better: "lower",
      target: { kind: "ratio", op: "<=", value: 0.5 },
    },
    { key: "list_cpu", label: `LIST of ${c.listFiles} files, server CPU`, unit: "CPU-ms", better: "lower" },
    { key: "mlsd_cpu", label: `MLSD of ${c.listFiles} files, server CPU`, unit: "CPU-ms", better: "lower" },
  ],
  warm: async (server, _fixture, config) => {
    await inMany(server, async (client) => {
      await listMany(client, "LIST", config)
      await listMany(client, "MLSD", config)
    })
    return undefined
  },
  measure: async (server, _fixture, config) => {
    const values: Record<string, number> = {}
    await inMany(server, async (client) => {
      for (const command of ["LIST", "MLSD"] as const) {
        const before = server.sample()
        const t0 = performance.now()
        for (let i = 0; i < config.listingsPerRep; i++) await listMany(client, command, config)
        const key = command === "LIST" ? "list" : "mlsd"
        values[`${key}_ms`] = (performance.now() - t0) / config.listingsPerRep
        values[`${key}_cpu`] = ((server.sample().cpuSeconds - before.cpuSeconds) * 1000) / config.listingsPerRep
      }
    })
    return { values }
  },
}

/** Open `count` logged-in sessions (50 at a time) and add them to `clients`. */
const openIdle = async (server: RunningServer, count: number, clients: FtpClient[]) => {
  const batch = 50
  const errors = collectErrors()
  const target = clients.length + count
  for (let i = 0; i < count; i += batch) {
    const opened = await Promise.allSettled(
      Array.from({ length: Math.min(batch, count - i) }, async () => {
        const client = await FtpClient.connect(HOST, server.port, IDLE_TIMEOUT_MS)
        try {
          await client.login(USER, PASSWORD)
        } catch (error) {
          client.close()
          throw error
        }
        client.disarm()
        clients.push(client)
      }),
    )
    for (const r of opened) if (r.status === "rejected") errors.add(r.reason)
  }
  if (clients.length < target) {
    throw new Error(`only ${clients.length} of ${target} sessions logged in; ${errors.notes("failed").join("; ")}`)
  }
}

const IDLE_TIMEOUT_MS = 30_000

/** Bytes per KB in the per-session rows: the target is in KB. */
const KB = 1000

/**
 * Memory of idle logged-in sessions: the server's RSS after start, then with `idleCounts` sessions
 * open (500, then 4,500 more for 5,000), each read once as it is and once after a full garbage
 * collection in the server (`RunningServer.gc`), each against the same reading before any session.
 */
const idle: PairedWorkload = {
  name: "idle-sessions",
  restartEachRep: true,
  needs: { gc: true },
  rows: (c) => [
    {
      key: "idle_rss",
      label: "RSS after start, idle",
      unit: "MiB",
      better: "lower",
      target: { kind: "absolute", op: "<=", value: 60 },
    },
    ...c.idleCounts.flatMap((n): RowSpec[] => [
      { key: `idle_rss_${n}`, label: `RSS with ${n} idle sessions`, unit: "MiB", better: "lower" },
      {
        key: `idle_kb_${n}`,
        label: `memory per idle session, ${n} sessions`,
        unit: "KB",
        better: "lower",
        target: { kind: "absolute", op: "<=", value: 16 },
      },
      {
        key: `idle_kb_${n}_gc`,
        label: `memory per idle session, ${n} sessions, after a GC`,
        unit: "KB",
        better: "lower",
        target: { kind: "absolute", op: "<=", value: 16 },
      },
    ]),
  ],
  measure: async (server, _fixture, config) => {
    const values: Record<string, number> = {}
    const clients: FtpClient[] = []
    try {
      await sleep(1000)
      const start = server.sample().rssKiB
      values.idle_rss = start / KiB
      const startGc = await server.gc() ? server.sample().rssKiB : NaN
      for (const n of config.idleCounts) {
        await openIdle(server, n - clients.length, clients)
        await sleep(1000)
        const loaded = server.sample().rssKiB
        values[`idle_rss_${n}`] = loaded / KiB
        values[`idle_kb_${n}`] = ((loaded - start) * KiB) / KB / n
        const loadedGc = await server.gc() ? server.sample().rssKiB : NaN
        values[`idle_kb_${n}_gc`] = ((loadedGc - startGc) * KiB) / KB / n
      }
      await Promise.allSettled(clients.map((client) => (client.arm(IDLE_TIMEOUT_MS), client.quit())))
    } finally {
      for (const client of clients) client.close()
    }
    return { values }
  },
}

/** socat's buffer size (`-b`): 256 KiB reads and writes, on both ends. */
const SOCAT_BUFFER = String(256 * KiB)

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

/** Wait for `child` to exit with 0 within `limitMs` (killed otherwise); resolves with its stderr. */
const exitedOk = async (child: Deno.ChildProcess, what: string, limitMs: number): Promise<string> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      try {
        child.kill("SIGKILL")
      } catch {
        // Exited in between.
      }
      reject(new Error(`${what} took over ${limitMs} ms`))
    }, limitMs)
  })
  try {
    const out = await Promise.race([child.output(), timeout])
    if (out.code !== 0) throw new Error(`${what} exited with ${out.code}: ${decode(out.stderr).trim().slice(-400)}`)
    return decode(out.stderr)
  } finally {
    clearTimeout(timer)
  }
}

/** The socat client: OpenSSL does the TLS of the data connection (`args` are its two addresses). */
const socat = (args: string[]): Deno.ChildProcess =>
  spawnTracked("socat", { args: ["-u", "-b", SOCAT_BUFFER, ...args], stdin: "null", stdout: "piped", stderr: "piped" })

/** Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp, without connecting to it). */
const listening = (port: number): boolean => {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`
  return Deno.readTextFileSync("/proc/net/tcp").split("\n").some((line) => {
    const fields = line.trim().split(/\s+/)
    return fields[1] === local && fields[3] === "0A"
  })
}

/**
 * The OpenSSL reference: `socat OPENSSL-LISTEN` serves `big.bin` once (OpenSSL encrypts, 256 KiB
 * reads from tmpfs), downloaded by the same socat client as the FTP rows. Its CPU time is read from
 * the cutime/cstime of the `sh` that waited for it.
 */
const opensslOnce = async (fixture: Fixture, config: BenchConfig): Promise<{ mibs: number; cpu: number }> => {
  const tls = fixture.tls!
  const { port } = pickPorts(1)
  const limitMs = curlLimit(config.size) * 1000
  const server = spawnTracked("sh", {
    args: [
      "-c",
      'socat -U -b "$1" "OPENSSL-LISTEN:$2,bind=127.0.0.1,cert=$3,key=$4,verify=0,reuseaddr" "OPEN:$5,rdonly"; ' +
      'code=$?; cat /proc/$$/stat >&2; exit "$code"',
      "sh",
      SOCAT_BUFFER,
      String(port),
      tls.certfile,
      tls.keyfile,
      `${fixture.root}/big.bin`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
  const serverDone = exitedOk(server, "socat OPENSSL-LISTEN", limitMs + 10_000)
  serverDone.catch(() => {})
  for (let i = 0; i < 200 && !listening(port); i++) await sleep(25)
  if (!listening(port)) {
    try {
      server.kill("SIGKILL")
    } catch {
      // Exited already.
    }
    await serverDone.catch((error) => {
      throw new Error(`socat OPENSSL-LISTEN did not listen on ${port}: ${error.message}`)
    })
    throw new Error(`socat OPENSSL-LISTEN did not listen on ${port} within 5 s`)
  }
  const t0 = performance.now()
  await exitedOk(socat([`OPENSSL:${HOST}:${port},verify=0`, "/dev/null"]), "socat OPENSSL client", limitMs)
  const seconds = (performance.now() - t0) / 1000
  const stat = (await serverDone).trim().split("\n").at(-1) ?? ""
  // Fields after the last ")": index 0 is field 3 (state); cutime is field 16, cstime field 17.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const cpuSeconds = (Number(fields[13]) + Number(fields[14])) / CLK_TCK
  return { mibs: config.size / MiB / seconds, cpu: cpuSeconds / (config.size / GiB) }
}

/**
 * PROT P through the bench's own client: the control connection (AUTH TLS, PBSZ 0, PROT P, TYPE I,
 * EPSV) in Deno, the data connection's TLS in socat/OpenSSL, which starts only after RETR/STOR is
 * sent (so pyftpdlib, which resets a data connection whose TLS starts earlier, works too). The time
 * runs from sending the command to both the 226 and socat's exit. Next to it, in the same rounds,
 * the same socat client downloads the same file from socat OPENSSL-LISTEN: the OpenSSL figure.
 */
const tlsOpenssl: PairedWorkload = {
  name: "tls-openssl",
  needs: { tls: true, socat: true },
  rows: (c) => [
    {
      key: "socat_retr_mibs",
      label: `PROT P RETR ${formatSize(c.size)}, socat/OpenSSL client`,
      unit: "MiB/s",
      better: "higher",
      target: { kind: "absolute", op: ">=", value: 1228.8 },
    },
    {
      key: "socat_retr_cpu",
      label: `PROT P RETR ${formatSize(c.size)}, socat client, server CPU`,
      unit: "CPU-s/GiB",
      better: "lower",
    },
    {
      key: "socat_stor_mibs",
      label: `PROT P STOR ${formatSize(c.size)}, socat/OpenSSL client`,
      unit: "MiB/s",
      better: "higher",
    },
    {
      key: "socat_stor_cpu",
      label: `PROT P STOR ${formatSize(c.size)}, socat client, server CPU`,
      unit: "CPU-s/GiB",
      better: "lower",
    },
    {
      key: "openssl_mibs",
      label: `  reference: socat OPENSSL-LISTEN, same client, same file`,
      unit: "MiB/s",
      better: "higher",
      noRatio: true,
    },
    {
      key: "openssl_cpu",
      label: `  reference: socat OPENSSL-LISTEN, server CPU`,
      unit: "CPU-s/GiB",
      better: "lower",
      noRatio: true,
    },
    {
      key: "openssl_ratio",
      label: `  OpenSSL MiB/s / server's PROT P RETR MiB/s`,
      unit: "x",
      better: "lower",
      target: { kind: "absolute", op: "<=", value: 1.3 },
      noRatio: true,
    },
  ],
  warm: async (server, fixture, config) => {
    await withSocatClient(server, fixture, config, async (client) => {
      await client.retr()
      await client.stor()
    })
    return undefined
  },
  measure: async (server, fixture, config) => {
    const values: Record<string, number> = {}
    await withSocatClient(server, fixture, config, async (client) => {
      const down = await client.retr()
      // The server's last TLS close and our socat's exit settle before the reference starts.
      await sleep(200)
      const reference = await opensslOnce(fixture, config)
      await sleep(200)
      const up = await client.stor()
      values.socat_retr_mibs = down.mibs
      values.socat_retr_cpu = down.cpu
      values.socat_stor_mibs = up.mibs
      values.socat_stor_cpu = up.cpu
      values.openssl_mibs = reference.mibs
      values.openssl_cpu = reference.cpu
      values.openssl_ratio = reference.mibs / down.mibs
    })
    return { values }
  },
}

/** A logged-in explicit-FTPS control connection whose RETR and STOR of `big.bin` run through socat. */
const withSocatClient = async (
  server: RunningServer,
  fixture: Fixture,
  config: BenchConfig,
  work: (client: {
    retr: () => Promise<{ mibs: number; cpu: number }>
    stor: () => Promise<{ mibs: number; cpu: number }>
  }) => Promise<void>,
) => {
  const timeoutMs = curlLimit(config.size) * 1000
  const client = await FtpClient.connect(HOST, server.port, 30_000)
  const uploaded = `${fixture.root}/upload-socat.bin`
  try {
    await client.secure(fixture.tls!.cert)
    await client.login(USER, PASSWORD)
    await client.expect("TYPE I", 200)
    const transfer = async (command: string, addresses: (port: number) => string[]) => {
      client.arm(timeoutMs + 10_000)
      const port = await client.epsv()
      const before = server.sample()
      const t0 = performance.now()
      await client.send(command)
      const child = socat(addresses(port))
      const done = exitedOk(child, `socat client of ${command}`, timeoutMs)
      done.catch(() => {})
      try {
        let reply = await client.readReply()
        if (reply.code === 125 || reply.code === 150) reply = await client.readReply()
        if (reply.code !== 226) {
          throw new Error(`${command}: expected 150 then 226, got ${JSON.stringify(reply.text)}`)
        }
      } catch (error) {
        try {
          child.kill("SIGKILL")
        } catch {
          // Exited already.
        }
        throw error
      }
      await done
      const seconds = (performance.now() - t0) / 1000
      const after = server.sample()
      return { mibs: config.size / MiB / seconds, cpu: (after.cpuSeconds - before.cpuSeconds) / (config.size / GiB) }
    }
    const retr = () => transfer("RETR big.bin", (port) => [`OPENSSL:${HOST}:${port},verify=0`, "/dev/null"])
    const stor = async () => {
      await Deno.remove(uploaded).catch(() => {})
      const r = await transfer(
        "STOR upload-socat.bin",
        (port) => [`OPEN:${fixture.root}/big.bin,rdonly`, `OPENSSL:${HOST}:${port},verify=0`],
      )
      const stored = (await Deno.stat(uploaded)).size
      if (stored !== config.size) throw new Error(`PROT P STOR left ${stored} bytes on disk, expected ${config.size}`)
      return r
    }
    await work({ retr, stor })
    client.arm(30_000)
    await client.quit()
  } finally {
    client.close()
    await Deno.remove(uploaded).catch(() => {})
  }
}

/** In the order they run and are printed; each one gets a freshly started server. */
export const workloads: readonly Workload[] = [
  makeRetr(false),
  retrFtplib,
  makeRetr(true),
  tlsOpenssl,
  makeStor(false),
  makeStor(true),
  retrMany,
  burst,
  logins,
  userFileLogins,
  listings,
  idle,
  monitoring,
]
