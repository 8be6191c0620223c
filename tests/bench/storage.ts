/**
 * The storage rows of the benchmark: ftpd serving `-d memory:` and `-d s3://` (s3rver, started
 * here under Node.js with its data beside the fixture), RETR and STOR throughput and server CPU,
 * next to `rclone copy` to and from the same s3rver in the same run (interleaved, a ratio per
 * pair), and the server's peak RSS during the S3 upload. Only ftpd has these columns.
 *
 * @module
 */
import { installed, rcloneEnv, S3RVER_CREDENTIALS, S3RVER_SCRIPT } from "../s3/s3rver.ts"
import { HOST, type RunningServer, spawnTracked } from "./servers.ts"
import {
  type BenchConfig,
  curl,
  curlLimit,
  type Fixture,
  formatSize,
  GiB,
  MiB,
  type PairedWorkload,
  url,
  type Workload,
} from "./workloads.ts"

const BUCKET = "bench"

/** Max of the server's VmRSS sampled every 50 ms while `work` runs, in MiB. */
const peakRss = async <A>(server: RunningServer, work: () => Promise<A>): Promise<{ result: A; peakMiB: number }> => {
  let peak = server.sample().rssKiB
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, server.sample().rssKiB)
    } catch {
      // Exited: the work fails and says so.
    }
  }, 50)
  try {
    const result = await work()
    peak = Math.max(peak, server.sample().rssKiB)
    return { result, peakMiB: peak / 1024 }
  } finally {
    clearInterval(timer)
  }
}

/** One timed transfer: MiB/s and the server's CPU seconds per GiB. */
const timed = async (server: RunningServer, args: string[], bytes: number) => {
  const before = server.sample()
  const r = await curl(args, curlLimit(bytes), bytes)
  const after = server.sample()
  return { mibs: r.bytes / MiB / r.transferSeconds, cpu: (after.cpuSeconds - before.cpuSeconds) / (r.bytes / GiB) }
}

export const memoryStorage: PairedWorkload = {
  name: "memory",
  storage: () => Promise.resolve({ args: ["-d", "memory:"] }),
  rows: (c) => [
    { key: "mem_stor_mibs", label: `memory: STOR ${formatSize(c.size)}, 1 client`, unit: "MiB/s", better: "higher" },
    {
      key: "mem_stor_cpu",
      label: `memory: STOR ${formatSize(c.size)}, server CPU`,
      unit: "CPU-s/GiB",
      better: "lower",
    },
    { key: "mem_retr_mibs", label: `memory: RETR ${formatSize(c.size)}, 1 client`, unit: "MiB/s", better: "higher" },
    {
      key: "mem_retr_cpu",
      label: `memory: RETR ${formatSize(c.size)}, server CPU`,
      unit: "CPU-s/GiB",
      better: "lower",
    },
  ],
  // Untimed first round: warming up, as the disk rows do.
  warm: async (server, fixture, config) => {
    await curl(["-T", `${fixture.root}/big.bin`, url(server, "big.bin")], curlLimit(config.size), config.size)
    return undefined
  },
  measure: async (server, fixture, config) => {
    const stor = await timed(server, ["-T", `${fixture.root}/big.bin`, url(server, "big.bin")], config.size)
    const retr = await timed(server, ["-o", "/dev/null", url(server, "big.bin")], config.size)
    return {
      values: { mem_stor_mibs: stor.mibs, mem_stor_cpu: stor.cpu, mem_retr_mibs: retr.mibs, mem_retr_cpu: retr.cpu },
    }
  },
}

/** The bench's s3rver, started on first use; killed with every other child when the bench ends. */
let s3rver: Promise<{ endpoint: string }> | undefined

const startS3rver = (fixture: Fixture): Promise<{ endpoint: string }> =>
  s3rver ??= (async () => {
    await installed()
    const directory = `${fixture.root}/../s3rver`
    await Deno.mkdir(directory, { recursive: true })
    const child = spawnTracked("node", {
      args: ["--openssl-legacy-provider", S3RVER_SCRIPT, directory, BUCKET, "0"],
      stdout: "piped",
      stderr: "null",
    })
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader()
    let text = ""
    while (!text.includes("\n")) {
      const { done, value } = await reader.read()
      if (done) throw new Error(`s3rver did not start (node and npm:s3rver are needed): ${text}`)
      text += value
    }
    reader.releaseLock()
    child.stdout.pipeTo(new WritableStream()).catch(() => undefined)
    const { port } = JSON.parse(text.slice(0, text.indexOf("\n"))) as { port: number }
    return { endpoint: `http://${HOST}:${port}` }
  })()

/** `rclone copyto from to` against the bench's s3rver: seconds of wall time. */
const rcloneCopy = async (endpoint: string, from: string, to: string, bytes: number): Promise<number> => {
  const started = performance.now()
  const child = spawnTracked("rclone", {
    // --ignore-times: copy even when the target looks the same (it does, from the round before).
    args: ["copyto", "--ignore-times", from, to],
    clearEnv: true,
    env: rcloneEnv(endpoint),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  })
  const timer = setTimeout(() => child.kill("SIGKILL"), curlLimit(bytes) * 1000)
  try {
    const out = await child.output()
    if (!out.success) throw new Error(`rclone copyto ${from} ${to}: ${new TextDecoder().decode(out.stderr).trim()}`)
    return (performance.now() - started) / 1000
  } finally {
    clearTimeout(timer)
  }
}

const s3Rows = (c: BenchConfig) => {
  const size = formatSize(c.size)
  return [
    { key: "s3_stor_mibs", label: `S3 (s3rver): STOR ${size}, 1 client`, unit: "MiB/s", better: "higher" },
    { key: "s3_stor_cpu", label: `S3 (s3rver): STOR ${size}, server CPU`, unit: "CPU-s/GiB", better: "lower" },
    { key: "s3_rclone_up_mibs", label: `  reference: rclone copy ${size} to s3rver`, unit: "MiB/s", better: "higher" },
    {
      key: "s3_stor_vs_rclone",
      label: "S3 STOR, ftpd / rclone (same run, per pair)",
      unit: "x",
      better: "higher",
      target: { kind: "absolute", op: ">=", value: 0.8 },
    },
    {
      key: "s3_stor_peak_rss",
      label: `S3 STOR ${size}: peak server RSS`,
      unit: "MiB",
      better: "lower",
      target: { kind: "absolute", op: "<=", value: 150 },
    },
    { key: "s3_retr_mibs", label: `S3 (s3rver): RETR ${size}, 1 client`, unit: "MiB/s", better: "higher" },
    { key: "s3_retr_cpu", label: `S3 (s3rver): RETR ${size}, server CPU`, unit: "CPU-s/GiB", better: "lower" },
    {
      key: "s3_rclone_down_mibs",
      label: `  reference: rclone copy ${size} from s3rver`,
      unit: "MiB/s",
      better: "higher",
    },
    {
      key: "s3_retr_vs_rclone",
      label: "S3 RETR, ftpd / rclone (same run, per pair)",
      unit: "x",
      better: "higher",
      target: { kind: "absolute", op: ">=", value: 0.8 },
    },
  ] as const
}

export const s3Storage: PairedWorkload = {
  name: "s3",
  storage: async (fixture) => {
    const { endpoint } = await startS3rver(fixture)
    return {
      args: ["-d", `s3://${BUCKET}/ftpd`, "--s3-endpoint", endpoint, "--s3-path-style"],
      env: {
        AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
      },
    }
  },
  rows: (c) => [...s3Rows(c)],
  // Untimed first round of each; then ftpd and rclone alternate within each repetition.
  warm: async (server, fixture, config) => {
    const { endpoint } = await startS3rver(fixture)
    const big = `${fixture.root}/big.bin`
    await curl(["-T", big, url(server, "up.bin")], curlLimit(config.size), config.size)
    await rcloneCopy(endpoint, big, `s3rver:${BUCKET}/rclone/up.bin`, config.size)
    return undefined
  },
  measure: async (server, fixture, config) => {
    const { endpoint } = await startS3rver(fixture)
    const big = `${fixture.root}/big.bin`
    const local = `${fixture.root}/../rclone-down.bin`
    try {
      const { result: stor, peakMiB } = await peakRss(
        server,
        () => timed(server, ["-T", big, url(server, "up.bin")], config.size),
      )
      const rcloneUp = config.size / MiB /
        await rcloneCopy(endpoint, big, `s3rver:${BUCKET}/rclone/up.bin`, config.size)
      const retr = await timed(server, ["-o", "/dev/null", url(server, "up.bin")], config.size)
      const rcloneDown = config.size / MiB /
        await rcloneCopy(endpoint, `s3rver:${BUCKET}/rclone/up.bin`, local, config.size)
      return {
        values: {
          s3_stor_mibs: stor.mibs,
          s3_stor_cpu: stor.cpu,
          s3_rclone_up_mibs: rcloneUp,
          s3_stor_vs_rclone: stor.mibs / rcloneUp,
          s3_stor_peak_rss: peakMiB,
          s3_retr_mibs: retr.mibs,
          s3_retr_cpu: retr.cpu,
          s3_rclone_down_mibs: rcloneDown,
          s3_retr_vs_rclone: retr.mibs / rcloneDown,
        },
        notes: ["rclone copies with its defaults (5 MiB chunks, 4 at a time up; multi-thread download)"],
      }
    } finally {
      await Deno.remove(local).catch(() => undefined)
    }
  },
}

/** The storage workloads, run after the others. */
export const storageWorkloads: readonly Workload[] = [memoryStorage, s3Storage]
