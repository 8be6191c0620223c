#!/usr/bin/env -S deno run --allow-all
/**
 * `deno task bench`: runs the same workloads against ftpd and, when installed, pyftpdlib (each a
 * separate process, its CPU and memory read from /proc), prints one table with both and the ratio,
 * and writes the numbers as JSON.
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
  TimeGuardError,
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
  --reps N           repetitions per measurement; the median is reported (default 3, --quick 1)
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

interface RowResult extends RowSpec {
  values: Partial<Record<ServerName, Cell>>
  ratio?: number
  /** ftpd with workers over ftpd alone. */
  workersRatio?: number
  targetMet?: boolean
}

const targetText = (row: RowSpec): string => {
  if (row.target === undefined) return ""
  const op = { "<=": "≤", ">=": "≥", "==": "=" }[row.target.op]
  return row.target.kind === "ratio" ? `${op}${row.target.value.toFixed(1)}x` : `${op}${row.target.value} ${row.unit}`
}

const meets = (value: number, target: NonNullable<RowSpec["target"]>): boolean =>
  target.op === "<=" ? value <= target.value : target.op === ">=" ? value >= target.value : value === target.value

const formatRatio = (ratio: number | undefined) =>
  ratio === undefined || !Number.isFinite(ratio) ? "–" : `${ratio.toFixed(2)}x`

const printTable = (rows: RowResult[], servers: ServerName[], workers: number | undefined) => {
  const both = servers.includes("ftpd") && servers.includes("pyftpdlib")
  const withWorkers = servers.includes("ftpd-workers")
  const title = (name: ServerName) => (name === "ftpd-workers" ? `ftpd×${workers}` : name)
  const header = [
    "measurement",
    "unit",
    "better",
    ...servers.map(title),
    ...(both ? ["ratio"] : []),
    ...(withWorkers ? [`×${workers}/1`] : []),
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
  const reps = flags.reps === undefined ? (quick ? 1 : 3) : Number(flags.reps)
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
    loginSeconds: quick ? 2 : 10,
    loginWorkers: 4,
    listFiles: quick ? 1000 : 10_000,
    listingsPerRep: quick ? 3 : 5,
    idleSessions: quick ? 100 : 500,
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
      `${config.loginSeconds} s logins, ${config.listFiles}-file listings, ${config.idleSessions} idle sessions`,
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
  try {
    outer: for (const workload of selected) {
      const workloadRows: RowResult[] = workload.rows(config).map((row) => ({ ...row, values: {} }))
      rows.push(...workloadRows)
      // Servers alternate per workload, so that drift on a noisy machine hits both columns alike.
      for (const spec of specs) {
        if (performance.now() > config.deadline) {
          addNote(
            "all",
            workload.name,
            `total time guard (${guardSeconds} s) reached; this and later workloads skipped`,
          )
          break outer
        }
        const needs = workload.needs ?? {}
        const skip = workload.storage !== undefined && spec.name !== "ftpd"
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
        if (skip !== null) {
          addNote(spec.name, workload.name, skip)
          continue
        }
        const t0 = performance.now()
        const logPath = `${fixture.root}/../${spec.name}-${workload.name}.log`
        const rounds = workload.restartEachRep ? config.reps : 1
        const roundConfig = workload.restartEachRep ? { ...config, reps: 1 } : config
        for (let round = 0; round < rounds; round++) {
          let server = null
          try {
            const extra = workload.storage === undefined ? {} : await workload.storage(fixture)
            server = await startServer(
              spec,
              fixture.root,
              logPath,
              needs.tls ? fixture.tls : null,
              30_000,
              extra,
              needs.usersFile ? fixture.usersFile : null,
            )
            const result = await workload.run(server, fixture, roundConfig)
            ;(peak[spec.name] ??= []).push(server.sample().hwmKiB / KiB)
            for (const row of workloadRows) {
              const samples = [...(row.values[spec.name]?.samples ?? []), ...(result.samples[row.key] ?? [])]
              row.values[spec.name] = { samples, median: median(samples) }
            }
            for (const note of result.notes) addNote(spec.name, workload.name, note)
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error)
            const log = server === null ? "" : tail(server.logPath, 800).trim()
            addNote(spec.name, workload.name, `${message}${log ? `\n  server log tail:\n${log}` : ""}`)
            if (error instanceof TimeGuardError) break outer
            break
          } finally {
            await server?.stop()
          }
        }
        console.error(`  ${spec.name} ${workload.name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`)
      }
    }
  } finally {
    killAll()
    removeFixture(fixture)
    Deno.removeSignalListener("SIGINT", onSignal)
    Deno.removeSignalListener("SIGTERM", onSignal)
  }

  const peakRow: RowResult = {
    key: "peak_rss",
    label: "peak RSS (VmHWM), largest of all workloads",
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
    const ftpd = row.values.ftpd?.median
    const py = row.values.pyftpdlib?.median
    if (
      !row.noRatio && ftpd !== undefined && py !== undefined && Number.isFinite(ftpd) && Number.isFinite(py) &&
      py !== 0
    ) {
      row.ratio = ftpd / py
    }
    const withWorkers = row.values["ftpd-workers"]?.median
    if (!row.noRatio && ftpd !== undefined && withWorkers !== undefined && Number.isFinite(ftpd) && ftpd !== 0) {
      row.workersRatio = withWorkers / ftpd
    }
    if (row.target !== undefined && ftpd !== undefined && Number.isFinite(ftpd)) {
      const value = row.target.kind === "ratio" ? row.ratio : ftpd
      if (value !== undefined) row.targetMet = meets(value, row.target)
    }
  }

  console.log("")
  printTable(rows, names, workerCount)
  if (names.includes("pyftpdlib") && names.includes("ftpd")) {
    console.log("\nratio = ftpd / pyftpdlib; the better column says which way is good.")
  }
  if (workerCount !== undefined) console.log(`×${workerCount}/1 = ftpd --workers ${workerCount} / ftpd.`)
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
