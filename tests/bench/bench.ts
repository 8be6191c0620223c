#!/usr/bin/env -S deno run --allow-all
/**
 * `deno task bench`: runs the same workloads against ftpd and, when installed, pyftpdlib (each a
 * separate process, its CPU and memory read from /proc), side by side in time: for each workload
 * every server is up at once, and each repetition measures them in turn, the order rotating. It
 * prints one table with both, the median of the pair-by-pair ratios and their spread, and writes
 * the numbers as JSON.
 *
 * ```sh
 * deno task bench --quick                 # under a minute
 * deno task bench --size 256M --reps 3    # fuller run
 * deno task bench --server ftpd --json /tmp/bench.json
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util"
import {
  ftpdAvailable,
  ftpdSpec,
  ftpdWorkersSpec,
  killAll,
  pyftpdlibSpec,
  pyftpdlibVersion,
  type RunningServer,
  type ServerName,
  type ServerSpec,
  startServer,
  tail,
} from "./servers.ts"
import {
  type BenchConfig,
  createFixture,
  formatSize,
  GiB,
  KiB,
  MiB,
  removeFixture,
  type RowSpec,
  type Workload,
  workloads as diskWorkloads,
} from "./workloads.ts"
import { storageWorkloads } from "./storage.ts"

const workloads = [...diskWorkloads, ...storageWorkloads]

/** What `--workers` runs unless `--only` says otherwise: many clients, logins, and memory. */
const WORKER_WORKLOADS = ["retr-concurrent", "burst", "logins", "idle-sessions"]

const USAGE = `Usage: deno task bench [options]

  --quick            small sizes, 1 repetition, under a minute for both servers
                     (PROT P rows: explicit FTPS with a self-signed certificate made by openssl at start;
                     the OpenSSL reference row needs socat)
  --server NAME      ftpd | pyftpdlib | both (default both)
  --size SIZE        bytes of the single-file RETR/STOR, e.g. 256M, 1G (default 1G, --quick 256M)
  --reps N           repetitions; each one measures every server once, in turn, the order rotating;
                     medians are reported, and ratios pair by pair (default 7, --quick 1)
  --only NAMES       comma-separated workloads to run: ${workloads.map((w) => w.name).join(", ")}
  --workers N        add a column for ftpd with --workers N (N >= 2) next to ftpd's, and its ratio to one
                     worker; without --only, runs the workloads that workers change: ${WORKER_WORKLOADS.join(", ")}
  --json PATH        where to write the JSON (default bench-results/bench-<timestamp>.json)
  -h, --help         this text
`

/** "256M", "1G", "64MiB", "1048576" → bytes. */
const parseSize = (text: string): number => {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i.exec(text.trim())
  if (m === null) throw new Error(`--size: cannot read ${JSON.stringify(text)} (try 256M or 1G)`)
  const unit = { "": 1, k: KiB, m: MiB, g: GiB }[m[2].toLowerCase() as "" | "k" | "m" | "g"]
  const bytes = Math.round(Number(m[1]) * unit)
  if (bytes < 1) throw new Error("--size must be at least 1 byte")
  return bytes
}

const median = (values: number[]): number => {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (finite.length === 0) return NaN
  const mid = finite.length >> 1
  return finite.length % 2 === 1 ? finite[mid] : (finite[mid - 1] + finite[mid]) / 2
}

const formatNumber = (n: number | undefined): string => {
  if (n === undefined || !Number.isFinite(n)) return "–"
  const abs = Math.abs(n)
  if (abs === 0 || abs >= 100) return n.toFixed(0)
  if (abs >= 10) return n.toFixed(1)
  if (abs >= 1) return n.toFixed(2)
  return n.toPrecision(2)
}

const text = (command: string, args: string[]): string => {
  try {
    const out = new Deno.Command(command, { args, stdout: "piped", stderr: "null" }).outputSync()
    return new TextDecoder().decode(out.stdout).trim()
  } catch {
    return "unknown"
  }
}

const machine = () => {
  const cpuinfo = (() => {
    try {
      return Deno.readTextFileSync("/proc/cpuinfo")
    } catch {
      return ""
    }
  })()
  const memKiB = Number(/^MemTotal:\s+(\d+)/m.exec(text("cat", ["/proc/meminfo"]))?.[1] ?? NaN)
  return {
    nproc: Number(text("nproc", [])) || navigator.hardwareConcurrency,
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown",
    memoryGiB: Math.round((memKiB / (1024 * 1024)) * 10) / 10,
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    curl: text("curl", ["--version"]).split("\n")[0].split(" ").slice(0, 2).join(" "),
  }
}

interface Cell {
  samples: number[]
  median: number
}

/** Ratios of samples taken side by side (the same repetition on two servers): their spread and median. */
interface Ratio {
  readonly pairs: number[]
  readonly min: number
  readonly median: number
  readonly max: number
}

/** a[i] / b[i] for every repetition i where both are numbers; undefined without one such pair. */
const pairRatios = (a: number[] | undefined, b: number[] | undefined): Ratio | undefined => {
  if (a === undefined || b === undefined) return undefined
  const pairs = a.flatMap((x, i) => Number.isFinite(x) && Number.isFinite(b[i]) && b[i] !== 0 ? [x / b[i]] : [])
  if (pairs.length === 0) return undefined
  return { pairs, min: Math.min(...pairs), median: median(pairs), max: Math.max(...pairs) }
}

interface RowResult extends RowSpec {
  values: Partial<Record<ServerName, Cell>>
  /** ftpd over pyftpdlib, pair by pair. */
  ratio?: Ratio
  /** ftpd with workers over ftpd alone, pair by pair. */
  workersRatio?: Ratio
  targetMet?: boolean
}

const targetText = (row: RowSpec): string => {
  if (row.target === undefined) return ""
  const op = { "<=": "≤", ">=": "≥", "==": "=" }[row.target.op]
  return row.target.kind === "ratio" ? `${op}${row.target.value.toFixed(1)}x` : `${op}${row.target.value} ${row.unit}`
}

const meets = (value: number, target: NonNullable<RowSpec["target"]>): boolean =>
  target.op === "<=" ? value <= target.value : target.op === ">=" ? value >= target.value : value === target.value

const formatRatio = (ratio: Ratio | undefined) =>
  ratio === undefined
    ? "–"
    : ratio.pairs.length === 1
    ? `${ratio.median.toFixed(2)}x`
    : `${ratio.median.toFixed(2)}x (${ratio.min.toFixed(2)}–${ratio.max.toFixed(2)})`

const printTable = (rows: RowResult[], servers: ServerName[], workers: number | undefined) => {
  const both = servers.includes("ftpd") && servers.includes("pyftpdlib")
  const withWorkers = servers.includes("ftpd-workers")
  const title = (name: ServerName) => (name === "ftpd-workers" ? `ftpd×${workers}` : name)
  const header = [
    "measurement",
    "unit",
    "better",
    ...servers.map(title),
    ...(both ? ["ratio (min–max)"] : []),
    ...(withWorkers ? [`×${workers}/1 (min–max)`] : []),
    "target (ftpd)",
  ]
  const body = rows.map((row) => {
    const cells = servers.map((name) => formatNumber(row.values[name]?.median))
    const target = row.target === undefined || row.targetMet === undefined
      ? targetText(row)
      : `${targetText(row)} ${row.targetMet ? "ok" : "MISS"}`
    return [
      row.label,
      row.unit,
      row.better,
      ...cells,
      ...(both ? [formatRatio(row.ratio)] : []),
      ...(withWorkers ? [formatRatio(row.workersRatio)] : []),
      target,
    ]
  })
  const widths = header.map((_, i) => Math.max(...[header, ...body].map((line) => line[i].length)))
  const numeric = (i: number) => i >= 3 && i < header.length - 1
  const format = (line: string[]) =>
    line.map((cell, i) => numeric(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i])).join("  ").trimEnd()
  console.log(format(header))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  for (const line of body) console.log(format(line))
}

const main = async (): Promise<number> => {
  const { values: flags } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      server: { type: "string", default: "both" },
      size: { type: "string" },
      reps: { type: "string" },
      json: { type: "string" },
      only: { type: "string" },
      workers: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  })
  if (flags.help) {
    console.log(USAGE)
    return 0
  }
  if (!["ftpd", "pyftpdlib", "both"].includes(flags.server)) {
    console.error(`--server must be ftpd, pyftpdlib or both, got ${flags.server}\n\n${USAGE}`)
    return 2
  }
  const workerCount = flags.workers === undefined ? undefined : Number(flags.workers)
  if (workerCount !== undefined && !(Number.isInteger(workerCount) && workerCount >= 2 && workerCount <= 64)) {
    console.error(`--workers must be a whole number from 2 to 64, got ${flags.workers}\n\n${USAGE}`)
    return 2
  }
  if (workerCount !== undefined && flags.server === "pyftpdlib") {
    console.error(`--workers needs the ftpd column (--server ftpd or both)\n\n${USAGE}`)
    return 2
  }
  const only = (flags.only ?? (workerCount === undefined ? undefined : WORKER_WORKLOADS.join(",")))?.split(",").map((
    name,
  ) => name.trim()).filter(Boolean)
  const unknown = only?.filter((name) => !workloads.some((w) => w.name === name)) ?? []
  if (unknown.length > 0) {
    console.error(`--only: unknown workload ${unknown.join(", ")}\n\n${USAGE}`)
    return 2
  }
  const selected = workloads.filter((w) => only === undefined || only.includes(w.name))
  const quick = flags.quick
  const reps = flags.reps === undefined ? (quick ? 1 : 7) : Number(flags.reps)
  if (!Number.isInteger(reps) || reps < 1 || reps > 100) {
    console.error("--reps must be an integer from 1 to 100")
    return 2
  }
  const size = flags.size === undefined ? (quick ? 256 * MiB : GiB) : parseSize(flags.size)
  const guardSeconds = quick ? 120 : 1800
  const started = performance.now()
  const config: BenchConfig = {
    quick,
    reps,
    size,
    multiClients: 20,
    multiSize: quick ? 16 * MiB : 50 * MiB,
    burstClients: 200,
    burstFileSize: 10 * KiB,
    loginSeconds: quick ? 2 : 4,
    loginWorkers: 4,
    listFiles: quick ? 1000 : 10_000,
    listingsPerRep: quick ? 3 : 5,
    idleCounts: quick ? [100] : [500, 5000],
    deadline: started + guardSeconds * 1000,
  }

  const wanted: ServerName[] = flags.server === "both" ? ["ftpd", "pyftpdlib"] : [flags.server as ServerName]
  const specs: ServerSpec[] = []
  const missing: string[] = []
  const pyVersion = pyftpdlibVersion()
  for (const name of wanted) {
    if (name === "ftpd") {
      if (ftpdAvailable()) specs.push(ftpdSpec, ...(workerCount === undefined ? [] : [ftpdWorkersSpec(workerCount)]))
      else missing.push("ftpd: src/cli.ts does not exist yet, so there is no ftpd column")
    } else {
      if (pyVersion !== null) specs.push(pyftpdlibSpec())
      else {
        missing.push(
          "pyftpdlib is not installed, so there is no reference column; " +
            "`apt-get install -y python3-pyftpdlib` adds it",
        )
      }
    }
  }
  if (specs.length === 0) {
    for (const line of missing) console.error(line)
    return 1
  }

  // However the run ends, no server or curl outlives it.
  const hardLimit = setTimeout(() => {
    console.error(`bench: hard time limit (${guardSeconds + 60} s) reached, killing everything`)
    killAll()
    Deno.exit(3)
  }, (guardSeconds + 60) * 1000)
  Deno.unrefTimer(hardLimit)

  const socatVersion = /socat version (\S+)/.exec(text("socat", ["-V"]))?.[1] ?? null
  const info = machine()
  console.log(
    `machine: ${info.nproc} CPUs (${info.cpu}), ${info.memoryGiB} GiB, Linux ${info.kernel}; ` +
      `deno ${info.deno}; ${info.curl}; pyftpdlib ${pyVersion ?? "not installed"}; ` +
      `socat ${socatVersion ?? "not installed"}`,
  )
  console.log(
    `workload: ${quick ? "--quick, " : ""}size ${formatSize(size)}, ${reps} rep(s) (median), ` +
      `${config.multiClients}×${formatSize(config.multiSize)}, ${config.burstClients} clients, ` +
      `${config.loginSeconds} s logins, ${config.listFiles}-file listings, ${
        config.idleCounts.join(" and ")
      } idle sessions`,
  )
  for (const line of missing) console.log(line)

  const fixture = await createFixture(config)
  const onSignal = () => {
    killAll()
    removeFixture(fixture)
    Deno.exit(130)
  }
  Deno.addSignalListener("SIGINT", onSignal)
  Deno.addSignalListener("SIGTERM", onSignal)
  if (!fixture.onTmpfs) console.log("note: /dev/shm is not usable; the files are on the temp dir's filesystem")
  console.log(`files ready in ${((performance.now() - started) / 1000).toFixed(1)} s under ${fixture.root}\n`)

  if (fixture.tls === null) {
    console.log(`note: no certificate (${fixture.tlsError}), so no PROT P rows; they need openssl`)
  }
  const names = specs.map((spec) => spec.name)
  const rows: RowResult[] = []
  // The same failure in several workloads (a server that does not start, say) is listed once.
  const notes: { server: string; workloads: string[]; message: string }[] = []
  const addNote = (server: string, workload: string, message: string) => {
    const seen = notes.find((n) => n.server === server && n.message === message)
    if (seen === undefined) notes.push({ server, workloads: [workload], message })
    else if (!seen.workloads.includes(workload)) seen.workloads.push(workload)
  }
  const peak: Partial<Record<ServerName, number[]>> = {}
  const skipOf = (workload: Workload, spec: ServerSpec): string | null => {
    const needs = workload.needs ?? {}
    return workload.storage !== undefined && spec.name !== "ftpd"
      ? "skipped: only ftpd serves this storage"
      : needs.tls && fixture.tls === null
      ? `skipped: no certificate (${fixture.tlsError})`
      : needs.tls && spec.tlsArgv === undefined
      ? `skipped: ${spec.tlsMissing}`
      : needs.usersFile && spec.usersArgv === undefined
      ? "skipped: it has no user file of hashed passwords (compare the -u/-P logins row)"
      : needs.socat && socatVersion === null
      ? "skipped: socat is not installed (`apt-get install -y socat` adds the OpenSSL reference rows)"
      : needs.ftpdOnly && spec.name !== "ftpd"
      ? "skipped: these rows measure ftpd's own options"
      : null
  }
  const start = async (workload: Workload, spec: ServerSpec): Promise<RunningServer> => {
    const needs = workload.needs ?? {}
    const extra = workload.storage === undefined ? {} : await workload.storage(fixture)
    return await startServer(
      spec,
      fixture.root,
      `${fixture.root}/../${spec.name}-${workload.name}.log`,
      needs.tls ? fixture.tls : null,
      30_000,
      extra,
      needs.usersFile ? fixture.usersFile : null,
      needs.gc === true,
    )
  }
  const failure = (error: unknown, server: RunningServer | null) => {
    const message = error instanceof Error ? error.message : String(error)
    const log = server === null ? "" : tail(server.logPath, 800).trim()
    return `${message}${log ? `\n  server log tail:\n${log}` : ""}`
  }
  try {
    for (const workload of selected) {
      if (performance.now() > config.deadline) {
        addNote("all", workload.name, `total time guard (${guardSeconds} s) reached; this and later workloads skipped`)
        break
      }
      const workloadRows: RowResult[] = workload.rows(config).map((row) => ({ ...row, values: {} }))
      rows.push(...workloadRows)
      const t0 = performance.now()
      const taking = specs.filter((spec) => {
        const skip = skipOf(workload, spec)
        if (skip !== null) addNote(spec.name, workload.name, skip)
        return skip === null
      })
      // The peak row compares like with like: only workloads that every server ran count.
      const notePeak = (name: ServerName, server: RunningServer) => {
        if (taking.length === specs.length) (peak[name] ??= []).push(server.sample().hwmKiB / KiB)
      }
      const record = (name: ServerName, rep: number, values: Record<string, number>) => {
        for (const row of workloadRows) {
          const cell = (row.values[name] ??= { samples: [], median: NaN })
          while (cell.samples.length < rep) cell.samples.push(NaN)
          cell.samples[rep] = values[row.key] ?? NaN
        }
      }
      if ("run" in workload) {
        // It runs its own servers side by side; each of ours in turn.
        for (const spec of taking) {
          let server: RunningServer | null = null
          try {
            server = await start(workload, spec)
            const result = await workload.run(server, fixture, config)
            notePeak(spec.name, server)
            const reps = Math.max(0, ...Object.values(result.samples).map((values) => values.length))
            for (let rep = 0; rep < reps; rep++) {
              record(spec.name, rep, Object.fromEntries(Object.entries(result.samples).map(([k, v]) => [k, v[rep]])))
            }
            for (const note of result.notes) addNote(spec.name, workload.name, note)
          } catch (error) {
            addNote(spec.name, workload.name, failure(error, server))
          } finally {
            await server?.stop()
          }
        }
      } else {
        const paired = workload
        const running = new Map<ServerName, RunningServer>()
        const alive = new Set(taking.map((spec) => spec.name))
        /** A fresh server of `spec`, warmed up; null (and a note) when it fails or cannot take part. */
        const ready = async (spec: ServerSpec): Promise<RunningServer | null> => {
          let server: RunningServer | null = null
          try {
            server = await start(paired, spec)
            const note = await paired.warm?.(server, fixture, config)
            if (note === undefined) return server
            addNote(spec.name, paired.name, note)
          } catch (error) {
            addNote(spec.name, paired.name, failure(error, server))
          }
          await server?.stop()
          alive.delete(spec.name)
          return null
        }
        try {
          if (!paired.restartEachRep) {
            for (const spec of taking) {
              const server = await ready(spec)
              if (server !== null) running.set(spec.name, server)
            }
          }
          for (let rep = 0; rep < config.reps; rep++) {
            if (performance.now() > config.deadline) {
              addNote("all", paired.name, `total time guard (${guardSeconds} s) reached after ${rep} repetition(s)`)
              break
            }
            // One measurement on each server in turn, the order rotating, so that the pair is taken side by side.
            const order = taking.map((_, i) => taking[(i + rep) % taking.length]).filter((s) => alive.has(s.name))
            for (const spec of order) {
              const server = paired.restartEachRep ? await ready(spec) : running.get(spec.name)!
              if (server === null) continue
              try {
                const measured = await paired.measure(server, fixture, config)
                record(spec.name, rep, measured.values)
                for (const note of measured.notes ?? []) addNote(spec.name, paired.name, note)
                if (paired.restartEachRep) notePeak(spec.name, server)
              } catch (error) {
                addNote(spec.name, paired.name, failure(error, server))
                alive.delete(spec.name)
              } finally {
                if (paired.restartEachRep) await server.stop()
              }
            }
          }
        } finally {
          for (const [name, server] of running) {
            try {
              notePeak(name, server)
            } catch {
              // Exited: its failure is noted already.
            }
            await server.stop()
          }
        }
      }
      for (const row of workloadRows) {
        for (const cell of Object.values(row.values)) cell.median = median(cell.samples)
      }
      console.error(`  ${workload.name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    }
  } finally {
    killAll()
    removeFixture(fixture)
    Deno.removeSignalListener("SIGINT", onSignal)
    Deno.removeSignalListener("SIGTERM", onSignal)
  }

  const peakRow: RowResult = {
    key: "peak_rss",
    label: "peak RSS (VmHWM), largest of the workloads every server ran",
    unit: "MiB",
    better: "lower",
    values: {},
  }
  for (const name of names) {
    const values = peak[name] ?? []
    if (values.length > 0) peakRow.values[name] = { samples: values, median: Math.max(...values) }
  }
  rows.push(peakRow)
  for (const row of rows) {
    // The peak row's cells hold one number each (the largest of all workloads), not repetitions.
    const cells = (name: ServerName) => row === peakRow ? [row.values[name]?.median ?? NaN] : row.values[name]?.samples
    if (!row.noRatio) {
      row.ratio = pairRatios(cells("ftpd"), cells("pyftpdlib"))
      row.workersRatio = pairRatios(cells("ftpd-workers"), cells("ftpd"))
    }
    const ftpd = row.values.ftpd?.median
    if (row.target !== undefined && ftpd !== undefined && Number.isFinite(ftpd)) {
      const value = row.target.kind === "ratio" ? row.ratio?.median : ftpd
      if (value !== undefined && Number.isFinite(value)) row.targetMet = meets(value, row.target)
    }
  }

  console.log("")
  printTable(rows, names, workerCount)
  if (names.includes("pyftpdlib") && names.includes("ftpd")) {
    console.log(
      "\nratio = ftpd / pyftpdlib: the median of the ratios of samples taken side by side (each repetition " +
        "measures every server in turn, the order rotating), with their min–max; the better column says which way is good.",
    )
  }
  if (workerCount !== undefined) console.log(`×${workerCount}/1 = ftpd --workers ${workerCount} / ftpd, pair by pair.`)
  const wallSeconds = (performance.now() - started) / 1000
  console.log(`wall time ${wallSeconds.toFixed(1)} s`)
  if (notes.length > 0) {
    console.log("\nnotes:")
    for (const note of notes) console.log(`- ${note.server} ${note.workloads.join(", ")}: ${note.message}`)
  }

  const jsonPath = flags.json ??
    new URL(`../../bench-results/bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`, import.meta.url)
      .pathname
  await Deno.mkdir(jsonPath.replace(/\/[^/]*$/, "") || ".", { recursive: true })
  await Deno.writeTextFile(
    jsonPath,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: { ...info, pyftpdlib: pyVersion },
        config: {
          ...config,
          deadline: undefined,
          guardSeconds,
          servers: names,
          workers: workerCount ?? 1,
          rootOnTmpfs: fixture.onTmpfs,
        },
        rows: rows.map(({ values, ...row }) => ({ ...row, ...values })),
        notes,
        missing,
        wallSeconds,
      },
      null,
      2,
    ) + "\n",
  )
  console.log(`\nJSON: ${jsonPath}`)
  return 0
}

globalThis.addEventListener("unload", killAll)

if (import.meta.main) {
  let code = 1
  try {
    code = await main()
  } catch (error) {
    console.error(error instanceof Error ? error.message : error)
  } finally {
    killAll()
  }
  Deno.exit(code)
}
