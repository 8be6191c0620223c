/**
 * The system's own password hashing: `crypt_rn` and `crypt_gensalt_rn` of libxcrypt
 * (`libcrypt.so.1`) through FFI, which know every scheme `/etc/shadow` may hold (yescrypt `$y$`,
 * SHA-crypt `$6$` and `$5$`, bcrypt, ...). `crypt_rn` runs off the event loop (`nonblocking`): a
 * yescrypt check takes tens of milliseconds that other sessions must not wait for.
 *
 * @module
 */
import { libc } from "./libc.ts"

const symbols = {
  crypt_rn: { parameters: ["buffer", "buffer", "buffer", "i32"], result: "pointer", nonblocking: true },
  crypt_gensalt_rn: { parameters: ["buffer", "u64", "buffer", "i32", "buffer", "i32"], result: "pointer" },
} as const

/** `sizeof(struct crypt_data)` in libxcrypt. */
const CRYPT_DATA_SIZE = 32768

/** The system's crypt. */
export interface Crypt {
  /** `password` hashed with `setting` (a full hash works: its salt and parameters are used); `null` if refused. */
  readonly crypt: (password: string, setting: string) => Promise<string | null>
  /** A new setting (scheme, parameters and random salt) of the system's default scheme. */
  readonly defaultSetting: () => string | null
}

const encoder = new TextEncoder()

let loaded: Crypt | null | undefined

const load = (): Crypt | null => {
  if (libc() === null) return null
  let c: Deno.DynamicLibrary<typeof symbols>["symbols"]
  try {
    c = Deno.dlopen("libcrypt.so.1", symbols).symbols
  } catch {
    return null
  }
  return {
    crypt: async (password, setting) => {
      // Its own buffer per call: calls run at the same time on different threads.
      const data = new Uint8Array(CRYPT_DATA_SIZE)
      const out = await c.crypt_rn(encoder.encode(password + "\0"), encoder.encode(setting + "\0"), data, data.length)
      if (out === null) return null
      const hash = new Deno.UnsafePointerView(out).getCString()
      // libxcrypt marks a failure with a string starting with "*" in some builds.
      return hash.startsWith("*") ? null : hash
    },
    defaultSetting: () => {
      const random = crypto.getRandomValues(new Uint8Array(16))
      const out = new Uint8Array(256)
      const made = c.crypt_gensalt_rn(null, 0n, random, random.length, out, out.length)
      return made === null ? null : new Deno.UnsafePointerView(made).getCString()
    },
  }
}

/**
 * The system's crypt, or `null` without `--allow-ffi` or `libcrypt.so.1`.
 *
 * @example
 * ```ts
 * import { systemCrypt } from "./crypt.ts"
 * const c = systemCrypt()
 * if (c !== null) console.log(await c.crypt("secret", c.defaultSetting()!))
 * ```
 */
export const systemCrypt = (): Crypt | null => {
  if (loaded === undefined) loaded = load()
  return loaded
}
