/**
 * Bandwidth limits as token buckets (pyftpdlib's `ThrottledDTPHandler`, shared across sessions).
 *
 * A {@link TokenBucket} refills at `rate` bytes/s up to `capacity` (a tenth of a second of
 * traffic). `take(n)` spends `n` tokens at once, going into debt if it must, and resolves when the
 * debt is paid: one `setTimeout` per chunk, never a busy wait. Concurrent takers queue up behind
 * each other's debt, so a bucket shared by many sessions keeps their sum at `rate`. Refill is
 * computed from the clock, so a late timer costs nothing over time: the average stays at `rate`,
 * plus one `capacity` burst at the start.
 *
 * A throttled loop moves at most {@link Throttle.chunk} bytes per step (the smallest capacity of
 * its buckets), so the debt of one step never exceeds a bucket's capacity.
 *
 * @module
 */
import * as Context from "effect/Context"

/** Seconds of traffic a bucket holds: the largest burst, and the largest step of a throttled loop. */
const BURST_SECONDS = 0.1
/** Below this a step is mostly overhead; at very low rates a step may take longer than `BURST_SECONDS`. */
const MIN_CAPACITY = 1024

/** `ms` milliseconds, or until `signal` aborts (then rejects with its reason). */
const sleep = (ms: number, signal: AbortSignal | undefined): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal!.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort)
      resolve()
    }, ms)
    signal?.addEventListener("abort", onAbort, { once: true })
  })

/**
 * A token bucket of `rate` bytes per second.
 *
 * @example
 * ```ts
 * import { TokenBucket } from "./throttle.ts"
 * const bucket = new TokenBucket(1_000_000) // 1 MB/s, 100 kB burst
 * const start = performance.now()
 * for (let i = 0; i < 5; i++) await bucket.take(100_000)
 * console.log(performance.now() - start >= 390) // true: the first 100 kB were the burst
 * ```
 */
export class TokenBucket {
  /** Most tokens the bucket holds (and it starts full). */
  readonly capacity: number
  private tokens: number
  private last = performance.now()
  constructor(readonly rate: number) {
    this.capacity = capacityOf(rate)
    this.tokens = this.capacity
  }

  /** Spend `bytes` now: the milliseconds until they are paid for (0: at once). */
  reserve(bytes: number): number {
    const now = performance.now()
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.rate) / 1000)
    this.last = now
    this.tokens -= bytes
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.rate
  }

  /** Spend `bytes`; resolves once the bucket has paid for them (rejects if `signal` aborts first). */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    const wait = this.reserve(bytes)
    return wait === 0 ? Promise.resolve() : sleep(wait, signal)
  }
}

/** What a throttle waits on: a {@link TokenBucket}, or one kept elsewhere (shared by workers). */
export interface Bucket {
  /** Bytes per second. */
  readonly rate: number
  readonly capacity: number
  take(bytes: number, signal?: AbortSignal): Promise<void>
}

/**
 * A bucket kept elsewhere: `reserve` spends the bytes there and says how long to wait.
 *
 * @example
 * ```ts
 * import { RemoteBucket, TokenBucket } from "./throttle.ts"
 * const far = new TokenBucket(1e6)
 * const near = new RemoteBucket(far.rate, (bytes) => Promise.resolve(far.reserve(bytes)))
 * await near.take(1000)
 * ```
 */
export class RemoteBucket implements Bucket {
  readonly capacity: number

  constructor(readonly rate: number, private readonly reserve: (bytes: number) => Promise<number>) {
    this.capacity = capacityOf(rate)
  }

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const wait = await this.reserve(bytes)
    if (wait > 0) await sleep(wait, signal)
  }
}

/** The capacity a bucket of `rate` bytes/s has (a tenth of a second of traffic, at least 1 KiB). */
export const capacityOf = (rate: number): number => Math.max(MIN_CAPACITY, Math.round(rate * BURST_SECONDS))

/** The buckets one transfer waits on (session, user, global): a step goes when all of them allow it. */
export class Throttle {
  /** Most bytes to move per step. */
  readonly chunk: number
  /** Milliseconds this transfer has waited for its buckets so far (traces report it). */
  throttledMs = 0

  constructor(readonly buckets: ReadonlyArray<Bucket>) {
    this.chunk = Math.min(...buckets.map((bucket) => bucket.capacity))
  }

  /** Wait until every bucket has paid for `bytes`. */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    const started = performance.now()
    const paid = this.buckets.length === 1
      ? this.buckets[0].take(bytes, signal)
      : Promise.all(this.buckets.map((bucket) => bucket.take(bytes, signal)))
    return paid.then(() => void (this.throttledMs += performance.now() - started))
  }
}

/** Bytes per second in each direction at one level; 0 for no limit. */
export interface Limits {
  /** Client to server (STOR, APPE, STOU). */
  readonly read: number
  /** Server to client (RETR, listings). */
  readonly write: number
}

interface Pair {
  read: Bucket | undefined
  write: Bucket | undefined
}

/** Where the server's and the users' buckets are kept: here, or (workers) in a coordinator. */
export type BucketMaker = (
  owner: { readonly user: string } | "server",
  direction: "read" | "write",
  rate: number,
) => Bucket

const localBucket: BucketMaker = (_owner, _direction, rate) => new TokenBucket(rate)

const pair = (limits: Limits, make: (direction: "read" | "write", rate: number) => Bucket): Pair => ({
  read: limits.read > 0 ? make("read", limits.read) : undefined,
  write: limits.write > 0 ? make("write", limits.write) : undefined,
})

/** Who a transfer belongs to, for the user buckets: the name, and the user's own limits if any. */
export interface Owner {
  readonly user: string
  readonly limits?: { readonly readLimit?: number; readonly writeLimit?: number }
}

/**
 * The buckets of one server: one pair for the whole server, one per user name (shared by all of
 * that user's sessions) and one per session. A user's own limit (`Owner.limits`) takes the place
 * of the server's per-user one. A user's pair is kept once made (a few numbers per user name that
 * has transferred), so a user who reconnects does not get a fresh burst; it is made anew when the
 * user's rate changed (a reloaded user file).
 *
 * @example
 * ```ts
 * import { Bandwidth } from "./throttle.ts"
 * const bandwidth = new Bandwidth({ read: 0, write: 1e6 }, { read: 0, write: 0 }, { read: 0, write: 0 })
 * const session = {}
 * console.log(bandwidth.throttle(session, { user: "alice" }, "write")?.chunk) // 100000
 * console.log(bandwidth.throttle(session, { user: "alice" }, "read")) // undefined: no limit, no per-chunk work
 * console.log(bandwidth.throttle(session, { user: "bob", limits: { readLimit: 5e5 } }, "read")?.chunk) // 50000
 * ```
 */
export class Bandwidth {
  private readonly global: Pair
  private readonly users = new Map<string, Pair>()
  private readonly sessions = new WeakMap<object, Pair>()
  /** Whether any server limit is set; when not, {@link throttle} is `undefined` but for users with their own. */
  readonly limited: boolean

  /** `shared` makes the server's and the users' buckets (default: in this process). */
  constructor(
    readonly session: Limits,
    readonly user: Limits,
    global: Limits,
    private readonly shared: BucketMaker = localBucket,
  ) {
    this.global = pair(global, (direction, rate) => shared("server", direction, rate))
    this.limited = [session, user, global].some((l) => l.read > 0 || l.write > 0)
  }

  /** The throttle of a transfer in `direction` by `session` (any object standing for it) of `owner`. */
  throttle(session: object, owner: Owner | null, direction: "read" | "write"): Throttle | undefined {
    const own = direction === "read" ? owner?.limits?.readLimit : owner?.limits?.writeLimit
    if (!this.limited && own === undefined) return undefined
    const buckets: Bucket[] = []
    const add = (bucket: Bucket | undefined) => {
      if (bucket !== undefined) buckets.push(bucket)
    }
    add(this.global[direction])
    const userRate = own ?? this.user[direction]
    if (userRate > 0 && owner !== null) {
      let mine = this.users.get(owner.user)
      if (mine === undefined) this.users.set(owner.user, mine = { read: undefined, write: undefined })
      if (mine[direction]?.rate !== userRate) mine[direction] = this.shared({ user: owner.user }, direction, userRate)
      add(mine[direction])
    }
    if (this.session[direction] > 0) {
      let mine = this.sessions.get(session)
      if (mine === undefined) this.sessions.set(session, mine = pair(this.session, (_, rate) => new TokenBucket(rate)))
      add(mine[direction])
    }
    return buckets.length === 0 ? undefined : new Throttle(buckets)
  }
}

/**
 * Where the server's and its users' buckets are kept when a layer says so (workers keep them in
 * their coordinator, so that a limit is not multiplied by the number of workers); by default here.
 */
export const SharedBuckets: Context.Reference<BucketMaker | null> = Context.Reference<BucketMaker | null>(
  "@ftpd/server/SharedBuckets",
  { defaultValue: () => null },
)
