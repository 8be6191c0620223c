/**
 * Connection accounting: the counts that the connection limits are checked against, in one place.
 * Connections in all (`maxCons`) and per address (`maxConsPerIp`) are counted from admission to
 * the end of the session; logged-in sessions per user (`maxSessionsPerUser`) from login to logout;
 * checksums being computed (`maxHashes`) from their start to their end.
 *
 * Every operation is an Effect, so that servers that share their counts (several processes or
 * workers behind one port) can keep them elsewhere without changing their callers.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"

/** Why a connection is refused: the limit it hit, the text of its 421, and the log line. */
export interface Refusal {
  readonly reason: "max_cons" | "per_ip"
  readonly reply: string
  readonly log: string
}

/** The counts of one server. */
export interface AdmissionShape {
  /** Count a new connection from `ip`, or say why it is refused (nothing is counted then). */
  readonly admit: (ip: string) => Effect.Effect<Refusal | undefined>
  /** The connection from `ip` ended. */
  readonly leave: (ip: string) => Effect.Effect<void>
  /**
   * Count a logged-in session of `user`; `false` (nothing counted) when the user is at the limit:
   * `maxSessions` when given (the user's own limit; 0 for none), else the server's.
   */
  readonly login: (user: string, maxSessions?: number) => Effect.Effect<boolean>
  /** A session of `user` logged out or ended. */
  readonly logout: (user: string) => Effect.Effect<void>
  /** Count a checksum starting; `false` (nothing counted) when the server computes `maxHashes` already. */
  readonly startChecksum: () => Effect.Effect<boolean>
  /** A checksum ended. */
  readonly endChecksum: () => Effect.Effect<void>
  /** Connections admitted and not yet ended. */
  readonly connections: () => number
}

/** The limits admission applies; 0 is no limit. */
export interface AdmissionLimits {
  readonly maxCons: number
  readonly maxConsPerIp: number
  readonly maxSessionsPerUser: number
  readonly maxHashes: number
}

/** The refusal of a connection from `ip` when the server holds `total` connections (`maxCons`). */
export const tooManyConnections = (ip: string, total: number): Refusal => ({
  reason: "max_cons",
  reply: "Too many connections. Service temporarily unavailable.",
  log: `${ip} refused: too many connections (${total}).`,
})

/** The refusal of a connection from `ip`, which holds `count` connections already (`maxConsPerIp`). */
export const tooManyFromIp = (ip: string, count: number): Refusal => ({
  reason: "per_ip",
  reply: "Too many connections from the same IP address.",
  log: `${ip} refused: too many connections from this address (${count}).`,
})

const decrement = (counts: Map<string, number>, key: string) => {
  const left = (counts.get(key) ?? 1) - 1
  if (left === 0) counts.delete(key)
  else counts.set(key, left)
}

/**
 * Counts kept in this process.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { makeAdmission } from "./admission.ts"
 * const admission = makeAdmission({ maxCons: 10, maxConsPerIp: 1, maxSessionsPerUser: 0, maxHashes: 2 })
 * console.log(await Effect.runPromise(admission.admit("192.0.2.1"))) // undefined: admitted
 * console.log((await Effect.runPromise(admission.admit("192.0.2.1")))?.reply) // "Too many connections from ..."
 * ```
 */
export const makeAdmission = (limits: AdmissionLimits): AdmissionShape => {
  let total = 0
  let checksums = 0
  const perIp = new Map<string, number>()
  const perUser = new Map<string, number>()
  return {
    admit: (ip) =>
      Effect.sync(() => {
        if (limits.maxCons > 0 && total >= limits.maxCons) return tooManyConnections(ip, total)
        const fromIp = perIp.get(ip) ?? 0
        if (limits.maxConsPerIp > 0 && fromIp >= limits.maxConsPerIp) return tooManyFromIp(ip, fromIp)
        total++
        perIp.set(ip, fromIp + 1)
        return undefined
      }),
    leave: (ip) =>
      Effect.sync(() => {
        total--
        decrement(perIp, ip)
      }),
    login: (user, maxSessions = limits.maxSessionsPerUser) =>
      Effect.sync(() => {
        const count = perUser.get(user) ?? 0
        if (maxSessions > 0 && count >= maxSessions) return false
        perUser.set(user, count + 1)
        return true
      }),
    logout: (user) => Effect.sync(() => decrement(perUser, user)),
    startChecksum: () =>
      Effect.sync(() => {
        if (limits.maxHashes > 0 && checksums >= limits.maxHashes) return false
        checksums++
        return true
      }),
    endChecksum: () => Effect.sync(() => void checksums--),
    connections: () => total,
  }
}

/**
 * The counts a server checks its limits against: its own (from its options) unless a layer
 * provides this service, as workers do to share one set of counts.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Admission, makeAdmission } from "@ftpd/server"
 * const shared = Layer.succeed(Admission, makeAdmission({ maxCons: 100, maxConsPerIp: 4, maxSessionsPerUser: 0, maxHashes: 2 }))
 * ```
 */
export const Admission: Context.Service<Admission, AdmissionShape> = Context.Service<Admission, AdmissionShape>(
  "@ftpd/server/Admission",
)
/** The admission service's shape. */
export type Admission = AdmissionShape
