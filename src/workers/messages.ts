/**
 * What the coordinator (the main thread) and its workers say to each other. Everything is
 * structured-cloneable data: a worker builds its own services from `data` and its module.
 *
 * @module
 */
import type { BanEntry } from "../bans.ts"
import type { ServerOptions } from "../options.ts"

/** The calls a worker makes on the coordinator's shared state. */
export type Call =
  | { readonly op: "admit"; readonly ip: string }
  | { readonly op: "leave"; readonly ip: string }
  | { readonly op: "login"; readonly user: string }
  | { readonly op: "logout"; readonly user: string }
  | { readonly op: "startChecksum" }
  | { readonly op: "endChecksum" }
  | { readonly op: "recordFailure"; readonly ip: string }
  | { readonly op: "ban"; readonly ip: string; readonly seconds: number }
  | { readonly op: "unban"; readonly ip: string }
  | {
    readonly op: "reserve"
    readonly owner: string | null
    readonly direction: "read" | "write"
    readonly rate: number
    readonly bytes: number
  }

/** From the coordinator to a worker. */
export type ToWorker =
  | {
    readonly type: "start"
    /** This worker's number, from 0, and how many there are. */
    readonly index: number
    readonly count: number
    /** The server's options, with this worker's passive port slice and the shared port. */
    readonly options: ServerOptions
    /** What the worker module reads with `workerData()`. */
    readonly data: unknown
    /** The connection total every worker shares (see `SharedTotal`). */
    readonly total: SharedArrayBuffer
    /** The bans in force when the worker starts. */
    readonly bans: ReadonlyArray<BanEntry>
  }
  | { readonly type: "reply"; readonly id: number; readonly value: unknown }
  /** The ban list changed. */
  | { readonly type: "bans"; readonly bans: ReadonlyArray<BanEntry> }
  /** Stop gracefully (`shutdownGrace`), as at a first SIGINT/SIGTERM. */
  | { readonly type: "drain" }
  /** Stop now. */
  | { readonly type: "stop" }
  /** SIGHUP: run the reloads. */
  | { readonly type: "hangup" }
  /** A scrape: send the Prometheus text of this worker's metrics. */
  | { readonly type: "metrics"; readonly id: number }

/** From a worker to the coordinator. */
export type FromWorker =
  | { readonly type: "listening"; readonly port: number; readonly implicitTlsPort: number | null }
  | { readonly type: "call"; readonly id: number; readonly call: Call }
  /** A log line, for a coordinator that collects its workers' logs. */
  | { readonly type: "log"; readonly line: string }
  /** This worker's metrics, as Prometheus text ("" when it records none). */
  | { readonly type: "metrics"; readonly id: number; readonly text: string }
  /** The worker's server has stopped; `failure` says why when it failed to start or crashed. */
  | { readonly type: "ended"; readonly failure?: string }
