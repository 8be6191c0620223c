/**
 * Password hashes: which ones ftpd reads, new ones, and checking a password without holding up
 * the server.
 *
 * New passwords are hashed with argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane). A stored
 * hash is read by its prefix, so that hashes made with the usual tools can be pasted in:
 *
 * | Prefix                                  | Scheme               | Made by                                        |
 * | --------------------------------------- | -------------------- | ---------------------------------------------- |
 * | `$argon2id$`, `$argon2i$`, `$argon2d$`  | argon2 (v=19)        | `ftpd users`, libraries                        |
 * | `$2a$`, `$2b$`, `$2y$`                  | bcrypt               | `htpasswd -nB user`                            |
 * | `$5$`, `$6$`                            | SHA-crypt            | `openssl passwd -5/-6`, `mkpasswd -m sha-512`  |
 * | `$y$`                                   | yescrypt (with FFI)  | `mkpasswd`, `/etc/shadow`                      |
 * | `$scrypt$ln=..,r=..,p=..$salt$hash`     | scrypt (PHC string)  | libraries                                      |
 * | `$pbkdf2-sha256$i=..[,l=..]$salt$hash`  | PBKDF2 (PHC string)  | libraries (also `pbkdf2-sha512`)               |
 *
 * The hash libraries compute synchronously (even behind a promise), for tens of milliseconds per
 * password: {@link makePasswordVerifier} runs them in Web Workers, so that other sessions are
 * served meanwhile.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as wasm from "hash-wasm"
import * as unixcrypt from "unixcrypt"
import { LIBRARY_SPECIFIERS, type PasswordLibraries, type PasswordRequest, passwordWork } from "./_password_work.ts"

const LIBRARIES: PasswordLibraries = { wasm, unixcrypt }

/** The schemes of the table above. */
export type HashScheme = "argon2" | "bcrypt" | "sha-crypt" | "yescrypt" | "scrypt" | "pbkdf2"

const B64 = "[A-Za-z0-9+/]+"
const CRYPT64 = "[./0-9A-Za-z]"

const FORMS: ReadonlyArray<
  { readonly scheme: HashScheme; readonly form: RegExp; readonly check?: (m: string[]) => boolean }
> = [
  {
    scheme: "argon2",
    form: new RegExp(`^\\$argon2(?:id|i|d)\\$v=19\\$m=(\\d+),t=(\\d+),p=(\\d+)\\$${B64}\\$${B64}$`),
    check: ([, m, t, p]) => Number(p) >= 1 && Number(p) <= 255 && Number(m) >= 8 * Number(p) && Number(t) >= 1,
  },
  { scheme: "bcrypt", form: new RegExp(`^\\$2[aby]\\$(?:0[4-9]|[12]\\d|3[01])\\$${CRYPT64}{53}$`) },
  {
    scheme: "sha-crypt",
    form: new RegExp(`^\\$([56])\\$(?:rounds=(\\d+)\\$)?[^$:\\s]{0,16}\\$(${CRYPT64}+)$`),
    check: ([, kind, rounds, digest]) =>
      digest.length === (kind === "5" ? 43 : 86) && (rounds === undefined || Number(rounds) >= 1000),
  },
  { scheme: "yescrypt", form: new RegExp(`^\\$y\\$${CRYPT64}+\\$${CRYPT64}*\\$${CRYPT64}{43}$`) },
  {
    scheme: "scrypt",
    form: new RegExp(`^\\$scrypt\\$ln=(\\d+),r=(\\d+),p=(\\d+)\\$${B64}\\$${B64}$`),
    check: ([, ln, r, p]) => Number(ln) >= 1 && Number(ln) <= 31 && Number(r) >= 1 && Number(p) >= 1,
  },
  {
    scheme: "pbkdf2",
    form: new RegExp(`^\\$pbkdf2-sha(?:256|512)\\$i=(\\d+)(?:,l=\\d+)?\\$${B64}\\$${B64}$`),
    check: ([, i]) => Number(i) >= 1,
  },
]

let yescrypt: boolean | undefined

/** Whether yescrypt can be checked here: the C library's crypt through FFI (found out once). */
const yescryptAvailable = (): boolean => {
  if (yescrypt !== undefined) return yescrypt
  yescrypt = false
  if (Deno.permissions.querySync?.({ name: "ffi" }).state !== "granted") return yescrypt
  try {
    Deno.dlopen("libcrypt.so.1", { crypt_rn: { parameters: ["buffer", "buffer", "buffer", "i32"], result: "pointer" } })
      .close()
    yescrypt = true
  } catch {
    // No libxcrypt here: yescrypt hashes are refused when the file is read.
  }
  return yescrypt
}

/**
 * The scheme of a stored hash, or why it can't be used: a plain-text password, an unknown or
 * malformed hash, or yescrypt without the C library.
 *
 * @example
 * ```ts
 * import { hashScheme } from "@ftpd/server"
 * console.log(hashScheme("$2y$05$pWGrKe.urD/eFotwtrs5Be/XnE9wwvcmPXA8u5Uv8iIPt8wfejxGm")) // { scheme: "bcrypt" }
 * console.log(hashScheme("secret")) // { error: "a plain-text password: ..." }
 * ```
 */
export const hashScheme = (hash: string): { readonly scheme: HashScheme } | { readonly error: string } => {
  if (!hash.startsWith("$")) {
    return {
      error: "a plain-text password: store a hash (ftpd users passwd, htpasswd -nB, openssl passwd -6)",
    }
  }
  for (const { scheme, form, check } of FORMS) {
    const match = form.exec(hash)
    if (match === null) continue
    if (check !== undefined && !check([...match])) return { error: `a ${scheme} hash with parameters out of range` }
    if (scheme === "yescrypt" && !yescryptAvailable()) {
      return { error: "a yescrypt hash: checking it needs the C library's crypt (libcrypt.so.1) and --allow-ffi" }
    }
    return { scheme }
  }
  return {
    error: "not a hash ftpd reads (argon2, bcrypt $2a$/$2b$/$2y$, SHA-crypt $5$/$6$, yescrypt $y$, " +
      "scrypt or PBKDF2 PHC strings)",
  }
}

/**
 * A new argon2id hash of `password` (OWASP's parameters). Runs on the calling thread for about
 * 50 ms: in a server, use a {@link PasswordVerifier}'s `hash`.
 *
 * @example
 * ```ts
 * import { hashPassword } from "@ftpd/server"
 * console.log((await hashPassword("secret")).startsWith("$argon2id$")) // true
 * ```
 */
export const hashPassword = async (password: string): Promise<string> =>
  (await passwordWork({ op: "hash", password }, LIBRARIES)) as string

/**
 * Whether `password` matches `hash` (any scheme {@link hashScheme} accepts). Runs on the calling
 * thread: in a server, use a {@link PasswordVerifier}.
 *
 * @example
 * ```ts
 * import { hashPassword, verifyPassword } from "@ftpd/server"
 * console.log(await verifyPassword("secret", await hashPassword("secret"))) // true
 * ```
 */
export const verifyPassword = async (password: string, hash: string): Promise<boolean> =>
  (await passwordWork({ op: "verify", password, hash }, LIBRARIES)) as boolean

/** Password work in Web Workers: the event loop, and every other session, goes on meanwhile. */
export interface PasswordVerifier {
  /** Whether `password` matches `hash`. */
  readonly verify: (password: string, hash: string) => Promise<boolean>
  /** A new argon2id hash of `password`. */
  readonly hash: (password: string) => Promise<string>
  /**
   * A hash of a random password with the scheme, parameters and salt of `hash`: checking a
   * password against it costs what checking against `hash` does (for users who do not exist).
   */
  readonly dummyLike: (hash: string) => Promise<string>
  /** How many workers share the work. */
  readonly workers: number
}

/**
 * The worker: requests one at a time, in order. Run concurrently they would gain nothing (one
 * thread) and each hold its own argon2 memory (19 MiB) at once.
 */
const workerSource = (): string => `
const libraries = {
  wasm: await import(${JSON.stringify(LIBRARY_SPECIFIERS.wasm)}),
  unixcrypt: await import(${JSON.stringify(LIBRARY_SPECIFIERS.unixcrypt)}),
}
const passwordWork = ${passwordWork.toString()}
let queue = Promise.resolve()
self.onmessage = ({ data }) => {
  queue = queue.then(async () => {
    try {
      self.postMessage({ id: data.id, result: await passwordWork(data.request, libraries) })
    } catch (error) {
      self.postMessage({ id: data.id, error: String(error?.message ?? error) })
    }
  })
}
`

interface Pending {
  readonly resolve: (result: boolean | string) => void
  readonly reject: (error: Error) => void
}

/** One worker and the requests it has not answered yet. */
class HashWorker {
  readonly pending = new Map<number, Pending>()
  private worker: Worker

  constructor(private readonly url: string) {
    this.worker = this.start()
  }

  private start(): Worker {
    const worker = new Worker(this.url, { type: "module", name: "ftpd-passwords" })
    worker.onmessage = ({ data }: MessageEvent<{ id: number; result?: boolean | string; error?: string }>) => {
      const waiting = this.pending.get(data.id)
      this.pending.delete(data.id)
      if (data.error !== undefined) waiting?.reject(new Error(data.error))
      else waiting?.resolve(data.result!)
    }
    // A worker that died (out of memory, say) fails what it held and is replaced.
    worker.onerror = (event) => {
      event.preventDefault()
      const error = new Error(`password worker failed: ${event.message}`)
      for (const waiting of this.pending.values()) waiting.reject(error)
      this.pending.clear()
      worker.terminate()
      this.worker = this.start()
    }
    return worker
  }

  run(id: number, request: PasswordRequest): Promise<boolean | string> {
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.worker.postMessage({ id, request })
    })
  }

  terminate(): void {
    const error = new Error("password workers stopped")
    for (const waiting of this.pending.values()) waiting.reject(error)
    this.pending.clear()
    this.worker.terminate()
  }
}

/**
 * The default number of workers: one fewer than the cores, at least one. Measured on 2 cores
 * with 40 concurrent argon2id checks: 1 worker 11.8 checks/s with timers late by at most 9 ms,
 * 2 workers 16.4/s but timers late by up to 31 ms (the event loop then shares its core).
 */
export const defaultPasswordWorkers = (): number => Math.max(1, Math.min(4, navigator.hardwareConcurrency - 1))

/**
 * Start `workers` password workers (default {@link defaultPasswordWorkers}) for as long as the
 * scope is open. Each request goes to the worker with the fewest waiting.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { makePasswordVerifier } from "@ftpd/server"
 * const ok = await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
 *   const verifier = yield* makePasswordVerifier()
 *   const hash = yield* Effect.promise(() => verifier.hash("secret"))
 *   return yield* Effect.promise(() => verifier.verify("secret", hash))
 * })))
 * console.log(ok) // true
 * ```
 */
export const makePasswordVerifier = (
  workers: number = defaultPasswordWorkers(),
): Effect.Effect<PasswordVerifier, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => {
        const url = `data:text/javascript,${encodeURIComponent(workerSource())}`
        return Array.from({ length: Math.max(1, Math.floor(workers)) }, () => new HashWorker(url))
      }),
      (pool) => Effect.sync(() => pool.forEach((worker) => worker.terminate())),
    ),
    (pool): PasswordVerifier => {
      let next = 0
      const run = (request: PasswordRequest) => {
        let least = pool[0]
        for (const worker of pool) if (worker.pending.size < least.pending.size) least = worker
        return least.run(next++, request)
      }
      return {
        verify: async (password, hash) => (await run({ op: "verify", password, hash })) as boolean,
        hash: async (password) => (await run({ op: "hash", password })) as string,
        dummyLike: async (hash) => {
          const random = crypto.getRandomValues(new Uint8Array(24)).toBase64()
          return (await run({ op: "like", password: random, hash })) as string
        },
        workers: pool.length,
      }
    },
  )
