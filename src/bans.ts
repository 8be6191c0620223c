/**
 * The `Bans` service: addresses refused at connect, in the spirit of ProFTPD's mod_ban and
 * SFTPGo's defender. Too many failed logins (or a command flood) from one address within a window
 * ban it for a while; a banned address gets `421` at connect and is closed before any session work.
 *
 * The server uses the `Bans` service of its context when there is one (to share bans between
 * servers, or keep them in a database), else an in-memory one built from its options
 * (`banAfterFailures`, `banWindow`, `banDuration`).
 *
 * @module
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** The text of the 421 a banned address gets, at connect or at its next login. */
export const BANNED_TEXT = "Too many failed logins from your address: try again later."

/** One banned address and when its ban ends. */
export interface BanEntry {
  /** The address as the server sees it (IPv4-mapped IPv6 addresses shown as IPv4). */
  readonly ip: string
  /** End of the ban, in milliseconds since the epoch. */
  readonly until: number
}

/** What the server asks of a ban list. */
export interface BansShape {
  /** Whether `ip` is banned now; called for every connection, before its session starts, so keep it fast. */
  readonly isBanned: (ip: string) => Effect.Effect<boolean>
  /**
   * Count one failed login (or a command flood) from `ip`; `true` when this failure got it banned,
   * so that the server logs the ban once.
   */
  readonly recordFailure: (ip: string) => Effect.Effect<boolean>
  /** Ban `ip` for `seconds` from now (replacing any ban it has). */
  readonly ban: (ip: string, seconds: number) => Effect.Effect<void>
  /** Lift the ban of `ip` and forget its failures. */
  readonly unban: (ip: string) => Effect.Effect<void>
  /** The bans in force. */
  readonly list: () => Effect.Effect<ReadonlyArray<BanEntry>>
}

/** When the in-memory ban list bans an address. */
export interface BanPolicy {
  /** Failed logins from one address within `banWindow` that ban it; 0 never bans (the default). */
  readonly banAfterFailures?: number
  /** Seconds over which failures are counted. Default 600. */
  readonly banWindow?: number
  /** Seconds a ban lasts. Default 3600. */
  readonly banDuration?: number
  /**
   * Most addresses tracked (failures and bans each); past it the oldest entry is forgotten, so
   * that an attacker with many addresses (an IPv6 prefix) cannot grow memory without bound.
   * Default 100,000.
   */
  readonly maxTracked?: number
}

/**
 * An in-memory ban list. Failures are kept per address as the times of the last
 * `banAfterFailures` failures (a sliding window); expired bans and stale failures are dropped as
 * they are met.
 */
const makeMemory = (policy: BanPolicy = {}): BansShape => {
  const after = policy.banAfterFailures ?? 0
  const windowMs = (policy.banWindow ?? 600) * 1000
  const durationMs = (policy.banDuration ?? 3600) * 1000
  const maxTracked = policy.maxTracked ?? 100_000
  const failures = new Map<string, number[]>()
  const bans = new Map<string, number>()
  /** Insert as the newest entry, forgetting the oldest when full (Maps iterate in insertion order). */
  const touch = <V>(map: Map<string, V>, key: string, value: V) => {
    map.delete(key)
    map.set(key, value)
    if (map.size > maxTracked) map.delete(map.keys().next().value!)
  }
  const banned = (ip: string, now: number) => {
    const until = bans.get(ip)
    if (until === undefined) return false
    if (until > now) return true
    bans.delete(ip)
    return false
  }
  return {
    isBanned: (ip) => Effect.map(Clock.currentTimeMillis, (now) => banned(ip, now)),
    recordFailure: (ip) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        if (after <= 0 || banned(ip, now)) return false
        const times = (failures.get(ip) ?? []).filter((t) => now - t < windowMs)
        times.push(now)
        if (times.length < after) {
          touch(failures, ip, times)
          return false
        }
        failures.delete(ip)
        touch(bans, ip, now + durationMs)
        return true
      }),
    ban: (ip, seconds) => Effect.map(Clock.currentTimeMillis, (now) => touch(bans, ip, now + seconds * 1000)),
    unban: (ip) =>
      Effect.sync(() => {
        bans.delete(ip)
        failures.delete(ip)
      }),
    list: () =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const entries: BanEntry[] = []
        for (const [ip, until] of bans) if (banned(ip, now)) entries.push({ ip, until })
        return entries
      }),
  }
}

const noop: BansShape = {
  isBanned: () => Effect.succeed(false),
  recordFailure: () => Effect.succeed(false),
  ban: () => Effect.void,
  unban: () => Effect.void,
  list: () => Effect.succeed([]),
}

const BansTag: Context.Service<Bans, BansShape> = Context.Service<Bans, BansShape>("@ftpd/server/Bans")

/**
 * The ban list a server consults. Provide {@link Bans.layer} to share one in-memory list between
 * servers (or to read and change it from the application), {@link Bans.layerNoop} to never ban,
 * or a layer of your own to persist bans.
 *
 * @example
 * ```ts
 * import { Bans, DummyAuthorizer, FtpServer, LocalFilesystem } from "@ftpd/server"
 * import { Effect, Layer } from "effect"
 *
 * const bans = Bans.layer({ banAfterFailures: 5, banWindow: 600, banDuration: 3600 })
 * const users = DummyAuthorizer.layer((a) => a.addUser("user", "12345", Deno.cwd(), { perm: "elr" }))
 * const server = FtpServer.layer({ host: "127.0.0.1", port: 2121 })
 * const banSomeone = Effect.gen(function* () {
 *   const list = yield* Bans
 *   yield* list.ban("192.0.2.7", 86_400)
 * })
 * Layer.launch(
 *   Layer.merge(server, Layer.effectDiscard(banSomeone)).pipe(Layer.provide([users, LocalFilesystem.layer, bans])),
 * ).pipe(Effect.runFork)
 * ```
 */
export const Bans: Context.Service<Bans, BansShape> & {
  /** An in-memory ban list with `policy`. */
  readonly make: (policy?: BanPolicy) => BansShape
  /** A layer providing an in-memory ban list with `policy`. */
  readonly layer: (policy?: BanPolicy) => Layer.Layer<Bans>
  /** A layer providing a ban list that never bans. */
  readonly layerNoop: Layer.Layer<Bans>
} = Object.assign(BansTag, {
  make: makeMemory,
  layer: (policy?: BanPolicy): Layer.Layer<Bans> => Layer.sync(BansTag, () => makeMemory(policy)),
  layerNoop: Layer.succeed(BansTag, noop),
})
/** The ban list's shape. */
export type Bans = BansShape
