/**
 * The workloads of `deno task bench`. Each one runs against a freshly started server, repeats its
 * measurement `reps` times, and returns the samples of each of its rows; `bench.ts` takes medians.
 * Every loop is bounded in count and in time, and every client has a timeout.
 *
 * @module
 */

import { FtpClient } from "./ftp_client.ts"
import { HOST, PASSWORD, type RunningServer, spawnTracked, USER } from "./servers.ts"

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
  readonly idleSessions: number
  /** `performance.now()` after which no new measurement starts. */
  readonly deadline: number
}

/** Files every server serves: `big.bin` (size), `multi.bin`, `small.bin`, and `many/` with listFiles files. */
export interface Fixture {
  readonly root: string
  readonly onTmpfs: boolean
}

/** A measurement row: what it is, its unit, which direction is better, and the target for ftpd. */
export interface RowSpec {
  readonly key: string
  readonly label: string
  readonly unit: string
  readonly better: "higher" | "lower"
  /** Target on ftpd/pyftpdlib (`ratio`) or on ftpd's own value (`absolute`). */
  readonly target?: { readonly kind: "ratio" | "absolute"; readonly op: "<=" | ">=" | "=="; readonly value: number }
}

/** Samples per row key, plus notes such as the first failure messages. */
export interface WorkloadResult {
  readonly samples: Record<string, number[]>
  readonly notes: string[]
}

export interface Workload {
  readonly name: string
  /** Run each repetition on a newly started server (for memory, which a process does not give back). */
  readonly restartEachRep?: boolean
  readonly rows: (config: BenchConfig) => RowSpec[]
  readonly run: (server: RunningServer, fixture: Fixture, config: BenchConfig) => Promise<WorkloadResult>
}

/** Thrown when the total wall-clock guard has passed; the remaining workloads are skipped. */
export class TimeGuardError extends Error {
  override readonly name = "TimeGuardError"
}

const guard = (config: BenchConfig) => {
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
  const fixture = { root: `${dir}/root`, onTmpfs }
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
  } catch (error) {
    removeFixture(fixture)
    throw error
  }
  return fixture
}

/** Remove the fixture's directory (the parent of its root). */
export const removeFixture = (fixture: Fixture): void => {
  try {
    Deno.removeSync(fixture.root.replace(/\/root$/, ""), { recursive: true })
  } catch {
    // Already gone.
  }
}

const url = (server: RunningServer, path: string) => `ftp://${USER}:${PASSWORD}@${HOST}:${server.port}/${path}`

interface CurlResult {
  readonly bytes: number
  /** Seconds from sending RETR/STOR to the final reply: curl's time_total - time_pretransfer. */
  readonly transferSeconds: number
}

/** Run curl with `args` and a `-w` that reports bytes and timings; fail on a non-zero exit or short transfer. */
const curl = async (args: string[], maxSeconds: number, expectBytes: number): Promise<CurlResult> => {
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
const curlLimit = (bytes: number) => 30 + bytes / (20 * MiB)

const retrBig: Workload = {
  name: "retr",
  rows: (c) => [
    {
      key: "retr_mibs",
      label: `RETR ${formatSize(c.size)}, 1 client`,
      unit: "MiB/s",
      better: "higher",
      target: { kind: "ratio", op: ">=", value: 1.0 },
    },
    {
      key: "retr_cpu",
      label: `RETR ${formatSize(c.size)}, server CPU`,
      unit: "CPU-s/GiB",
      better: "lower",
      target: { kind: "ratio", op: "<=", value: 1.0 },
    },
  ],
  run: async (server, _fixture, config) => {
    const mibs: number[] = []
    const cpu: number[] = []
    // One untimed transfer first: the first run after a start pays for warming up, not for the transfer.
    await curl(["-o", "/dev/null", url(server, "big.bin")], curlLimit(config.size), config.size)
    for (let rep = 0; rep < config.reps; rep++) {
      guard(config)
      const before = server.sample()
      const r = await curl(["-o", "/dev/null", url(server, "big.bin")], curlLimit(config.size), config.size)
      const after = server.sample()
      mibs.push(r.bytes / MiB / r.transferSeconds)
      cpu.push((after.cpuSeconds - before.cpuSeconds) / (r.bytes / GiB))
    }
    return { samples: { retr_mibs: mibs, retr_cpu: cpu }, notes: [] }
  },
}

const storBig: Workload = {
  name: "stor",
  rows: (c) => [
    {
      key: "stor_mibs",
      label: `STOR ${formatSize(c.size)}, 1 client`,
      unit: "MiB/s",
      better: "higher",
      target: { kind: "ratio", op: ">=", value: 1.4 },
    },
    {
      key: "stor_cpu",
      label: `STOR ${formatSize(c.size)}, server CPU`,
      unit: "CPU-s/GiB",
      better: "lower",
      target: { kind: "ratio", op: "<=", value: 0.7 },
    },
  ],
  run: async (server, fixture, config) => {
    const mibs: number[] = []
    const cpu: number[] = []
    const uploaded = `${fixture.root}/upload.bin`
    const upload = () =>
      curl(["-T", `${fixture.root}/big.bin`, url(server, "upload.bin")], curlLimit(config.size), config.size)
    // Untimed: the first upload into fresh tmpfs pages was 2-4x slower in every trial, for either server.
    await upload()
    for (let rep = 0; rep < config.reps; rep++) {
      guard(config)
      await Deno.remove(uploaded).catch(() => {})
      const before = server.sample()
      const r = await upload()
      const after = server.sample()
      const stored = (await Deno.stat(uploaded)).size
      if (stored !== config.size) throw new Error(`STOR left ${stored} bytes on disk, expected ${config.size}`)
      mibs.push(r.bytes / MiB / r.transferSeconds)
      cpu.push((after.cpuSeconds - before.cpuSeconds) / (r.bytes / GiB))
    }
    await Deno.remove(uploaded).catch(() => {})
    return { samples: { stor_mibs: mibs, stor_cpu: cpu }, notes: [] }
  },
}

const retrMany: Workload = {
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
  run: async (server, _fixture, config) => {
    const mibs: number[] = []
    const cpu: number[] = []
    const total = config.multiClients * config.multiSize
    await curl(["-o", "/dev/null", url(server, "multi.bin")], curlLimit(config.multiSize), config.multiSize)
    for (let rep = 0; rep < config.reps; rep++) {
      guard(config)
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
      mibs.push(total / MiB / seconds)
      cpu.push((after.cpuSeconds - before.cpuSeconds) / (total / GiB))
    }
    return { samples: { multi_mibs: mibs, multi_cpu: cpu }, notes: [] }
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

const burst: Workload = {
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
  run: async (server, _fixture, config) => {
    const timeoutMs = 30_000
    const errors = collectErrors()
    const samples: Record<string, number[]> = { burst_failures: [], burst_total: [], burst_p50: [], burst_p99: [] }
    // One session first, so that neither server pays for a cold start inside the measurement.
    await shortSession(server, config.burstFileSize, timeoutMs)
    for (let rep = 0; rep < config.reps; rep++) {
      guard(config)
      const t0 = performance.now()
      const latencies = await Promise.all(
        Array.from({ length: config.burstClients }, async () => {
          const start = performance.now()
          try {
            await shortSession(server, config.burstFileSize, timeoutMs)
            return performance.now() - start
          } catch (error) {
            errors.add(error)
            return null
          }
        }),
      )
      const total = performance.now() - t0
      const ok = latencies.filter((ms): ms is number => ms !== null)
      samples.burst_failures.push(config.burstClients - ok.length)
      samples.burst_total.push(total)
      samples.burst_p50.push(ok.length > 0 ? percentile(ok, 50) : NaN)
      samples.burst_p99.push(ok.length > 0 ? percentile(ok, 99) : NaN)
      await sleep(200)
    }
    return { samples, notes: errors.notes("failed session") }
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

const logins: Workload = {
  name: "logins",
  rows: (c) => [
    {
      key: "login_rate",
      label: `connect+login+QUIT, ${c.loginWorkers} workers, ${c.loginSeconds} s`,
      unit: "logins/s",
      better: "higher",
    },
    {
      key: "login_cpu",
      label: "connect+login+QUIT, server CPU",
      unit: "CPU-ms/login",
      better: "lower",
      target: { kind: "ratio", op: "<=", value: 1.0 },
    },
    { key: "login_failures", label: "connect+login+QUIT: failures", unit: "count", better: "lower" },
  ],
  run: async (server, _fixture, config) => {
    const timeoutMs = 10_000
    const maxPerWorker = 1_000_000
    const errors = collectErrors()
    const samples: Record<string, number[]> = { login_rate: [], login_cpu: [], login_failures: [] }
    for (let i = 0; i < 20; i++) await loginOnce(server, timeoutMs)
    for (let rep = 0; rep < config.reps; rep++) {
      guard(config)
      let done = 0
      let failed = 0
      const before = server.sample()
      const t0 = performance.now()
      const stopAt = t0 + config.loginSeconds * 1000
      await Promise.all(
        Array.from({ length: config.loginWorkers }, async () => {
          for (let i = 0; i < maxPerWorker && performance.now() < stopAt; i++) {
            try {
              await loginOnce(server, timeoutMs)
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
      samples.login_rate.push(done / seconds)
      samples.login_cpu.push(done > 0 ? ((after.cpuSeconds - before.cpuSeconds) * 1000) / done : NaN)
      samples.login_failures.push(failed)
    }
    return { samples, notes: errors.notes("failed login") }
  },
}

const listings: Workload = {
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
  run: async (server, _fixture, config) => {
    const timeoutMs = 60_000
    const samples: Record<string, number[]> = { list_ms: [], mlsd_ms: [], list_cpu: [], mlsd_cpu: [] }
    const client = await FtpClient.connect(HOST, server.port, timeoutMs)
    try {
      await client.login(USER, PASSWORD)
      await client.expect("CWD many", 250)
      const list = async (command: "LIST" | "MLSD") => {
        client.arm(timeoutMs)
        const got = await client.transfer(command, true)
        if (got.lines < config.listFiles) {
          throw new Error(`${command} returned ${got.lines} lines for ${config.listFiles} files`)
        }
      }
      await list("LIST")
      await list("MLSD")
      for (let rep = 0; rep < config.reps; rep++) {
        for (const command of ["LIST", "MLSD"] as const) {
          guard(config)
          const before = server.sample()
          const t0 = performance.now()
          for (let i = 0; i < config.listingsPerRep; i++) await list(command)
          const ms = (performance.now() - t0) / config.listingsPerRep
          const cpuMs = ((server.sample().cpuSeconds - before.cpuSeconds) * 1000) / config.listingsPerRep
          const key = command === "LIST" ? "list" : "mlsd"
          samples[`${key}_ms`].push(ms)
          samples[`${key}_cpu`].push(cpuMs)
        }
      }
      client.arm(timeoutMs)
      await client.quit()
    } finally {
      client.close()
    }
    return { samples, notes: [] }
  },
}

const idle: Workload = {
  name: "idle-sessions",
  restartEachRep: true,
  rows: (c) => [
    {
      key: "idle_rss",
      label: "RSS after start, idle",
      unit: "MiB",
      better: "lower",
      target: { kind: "absolute", op: "<=", value: 60 },
    },
    {
      key: "idle_rss_sessions",
      label: `RSS with ${c.idleSessions} idle sessions`,
      unit: "MiB",
      better: "lower",
    },
    {
      key: "idle_per_session",
      label: "memory per idle session",
      unit: "KiB",
      better: "lower",
      target: { kind: "absolute", op: "<=", value: 16 },
    },
  ],
  run: async (server, _fixture, config) => {
    const timeoutMs = 30_000
    const batch = 50
    const errors = collectErrors()
    const samples: Record<string, number[]> = { idle_rss: [], idle_rss_sessions: [], idle_per_session: [] }
    await sleep(1000)
    for (let rep = 0; rep < config.reps; rep++) {
      guard(config)
      const before = server.sample()
      const clients: FtpClient[] = []
      try {
        for (let i = 0; i < config.idleSessions; i += batch) {
          const opened = await Promise.allSettled(
            Array.from({ length: Math.min(batch, config.idleSessions - i) }, async () => {
              const client = await FtpClient.connect(HOST, server.port, timeoutMs)
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
        if (clients.length < config.idleSessions) {
          throw new Error(`only ${clients.length} of ${config.idleSessions} sessions logged in`)
        }
        await sleep(1000)
        const loaded = server.sample()
        samples.idle_rss.push(before.rssKiB / KiB)
        samples.idle_rss_sessions.push(loaded.rssKiB / KiB)
        samples.idle_per_session.push((loaded.rssKiB - before.rssKiB) / config.idleSessions)
        await Promise.allSettled(clients.map((client) => (client.arm(timeoutMs), client.quit())))
      } finally {
        for (const client of clients) client.close()
      }
      await sleep(1000)
    }
    return { samples, notes: errors.notes("failed idle session") }
  },
}

/** In the order they run and are printed; each one gets a freshly started server. */
export const workloads: readonly Workload[] = [retrBig, storBig, retrMany, burst, logins, listings, idle]
