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
  guard,
  MiB,
  url,
  type Workload,
  type WorkloadResult,
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

export const memoryStorage: Workload = {
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
  run: async (server, fixture, config) => {
    const samples: Record<string, number[]> = {}
    const add = (key: string, value: number) => (samples[key] ??= []).push(value)
    const up = ["-T", `${fixture.root}/big.bin`, url(server, "big.bin")]
    const down = ["-o", "/dev/null", url(server, "big.bin")]
    // Untimed first round: warming up, as the disk rows do.
    await curl(up, curlLimit(config.size), config.size)
    for (let rep = 0; rep < config.reps; rep++) {
      guard(config)
      const stor = await timed(server, up, config.size)
      add("mem_stor_mibs", stor.mibs)
      add("mem_stor_cpu", stor.cpu)
      const retr = await timed(server, down, config.size)
      add("mem_retr_mibs", retr.mibs)
      add("mem_retr_cpu", retr.cpu)
    }
    return { samples, notes: [] }
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

export const s3Storage: Workload = {
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
  run: async (server, fixture, config): Promise<WorkloadResult> => {
    const { endpoint } = await startS3rver(fixture)
    const samples: Record<string, number[]> = {}
    const add = (key: string, value: number) => (samples[key] ??= []).push(value)
    const big = `${fixture.root}/big.bin`
    const up = ["-T", big, url(server, "up.bin")]
    const down = ["-o", "/dev/null", url(server, "up.bin")]
    const local = `${fixture.root}/../rclone-down.bin`
    // Untimed first round of each, then ftpd and rclone alternate, so drift hits both alike.
    await curl(up, curlLimit(config.size), config.size)
    await rcloneCopy(endpoint, big, `s3rver:${BUCKET}/rclone/up.bin`, config.size)
    try {
      for (let rep = 0; rep < config.reps; rep++) {
        guard(config)
        const { result: stor, peakMiB } = await peakRss(server, () => timed(server, up, config.size))
        const rcloneUp = config.size / MiB /
          await rcloneCopy(endpoint, big, `s3rver:${BUCKET}/rclone/up.bin`, config.size)
        add("s3_stor_mibs", stor.mibs)
        add("s3_stor_cpu", stor.cpu)
        add("s3_rclone_up_mibs", rcloneUp)
        add("s3_stor_vs_rclone", stor.mibs / rcloneUp)
        add("s3_stor_peak_rss", peakMiB)
        const retr = await timed(server, down, config.size)
        const rcloneDown = config.size / MiB /
          await rcloneCopy(endpoint, `s3rver:${BUCKET}/rclone/up.bin`, local, config.size)
        await Deno.remove(local).catch(() => undefined)
        add("s3_retr_mibs", retr.mibs)
        add("s3_retr_cpu", retr.cpu)
        add("s3_rclone_down_mibs", rcloneDown)
        add("s3_retr_vs_rclone", retr.mibs / rcloneDown)
      }
    } finally {
      await Deno.remove(local).catch(() => undefined)
    }
    return {
      samples,
      notes: ["rclone copies with its defaults (5 MiB chunks, 4 at a time up; multi-thread download)"],
    }
  },
}

/** The storage workloads, run after the others. */
export const storageWorkloads: readonly Workload[] = [memoryStorage, s3Storage]
