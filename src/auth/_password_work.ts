/**
 * The password work itself: checking a password against a stored hash, and making a hash. One
 * function, {@link passwordWork}, run either on the calling thread or in a Web Worker, which gets
 * it as source text (`passwordWork.toString()`) and the libraries as `npm:` imports. A worker made
 * from text needs no permission to read a module file (one made from a file of this package
 * would need `--allow-read` for it); the price is that the function may use nothing from outside
 * its own body and its `libraries` argument: the worker tests catch a slip.
 *
 * The libraries: `hash-wasm` (argon2, bcrypt, scrypt), WebCrypto (PBKDF2), `unixcrypt` (SHA-crypt `$5$` and
 * `$6$`), and for yescrypt `$y$` the C library's `crypt_rn` (libxcrypt) through FFI. Their
 * computations are synchronous, even where the API returns a promise: hence the workers.
 *
 * @module
 */

/** The libraries {@link passwordWork} computes with. */
export interface PasswordLibraries {
  readonly wasm: typeof import("hash-wasm")
  readonly unixcrypt: typeof import("unixcrypt")
}

/**
 * The `npm:` specifiers a worker imports the libraries by: the versions of `deno.json`'s imports
 * (a test holds them equal). A worker made from text has no import map.
 */
export const LIBRARY_SPECIFIERS = { wasm: "npm:hash-wasm@4.13.0", unixcrypt: "npm:unixcrypt@3.0.4" } as const

/** What {@link passwordWork} is asked. */
export type PasswordRequest =
  /** Whether `password` matches `hash`. */
  | { readonly op: "verify"; readonly password: string; readonly hash: string }
  /** A hash of `password` made with the scheme, parameters and salt of `like` (a dummy of the same cost). */
  | { readonly op: "like"; readonly password: string; readonly hash: string }
  /** A new argon2id hash of `password` (OWASP's parameters: 19 MiB, 2 passes, 1 lane). */
  | { readonly op: "hash"; readonly password: string }

/**
 * Do `request`: a boolean for `verify`, a hash for `like` and `hash`. Throws on a hash it can't
 * read (the user file checks every hash's form when it loads, so that is a bug or a library gap).
 */
export async function passwordWork(
  request: PasswordRequest,
  libraries: PasswordLibraries,
): Promise<boolean | string> {
  const { wasm, unixcrypt } = libraries
  const encoder = new TextEncoder()
  const fromBase64 = (text: string): Uint8Array<ArrayBuffer> =>
    Uint8Array.from(atob(text.replace(/=+$/, "")), (c) => c.charCodeAt(0))
  const toBase64 = (bytes: Uint8Array): string => btoa(String.fromCharCode(...bytes)).replace(/=+$/, "")
  /** Equal bytes, every byte looked at. */
  const same = (a: Uint8Array, b: Uint8Array): boolean => {
    let diff = a.length ^ b.length
    for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0)
    return diff === 0
  }
  const sameText = (a: string, b: string) => same(encoder.encode(a), encoder.encode(b))
  /** `name=value,...` parameters of a PHC string. */
  const params = (text: string): Record<string, number> =>
    Object.fromEntries(text.split(",").map((pair) => pair.split("=")).map(([k, v]) => [k, Number(v)]))
  /** The C library's crypt (libxcrypt), for the schemes only it knows (yescrypt). */
  const crypt = (password: string, setting: string): string => {
    const lib = Deno.dlopen("libcrypt.so.1", {
      crypt_rn: { parameters: ["buffer", "buffer", "buffer", "i32"], result: "pointer" },
    })
    try {
      const data = new Uint8Array(32768)
      const out = lib.symbols.crypt_rn(
        encoder.encode(password + "\0"),
        encoder.encode(setting + "\0"),
        data,
        data.length,
      )
      if (out === null) throw new Error("crypt_rn refused the hash")
      return new Deno.UnsafePointerView(out).getCString()
    } finally {
      lib.close()
    }
  }

  const { hash } = request.op === "hash" ? { hash: "" } : request
  const password = request.password
  if (request.op === "hash") {
    return await wasm.argon2id({
      password,
      salt: crypto.getRandomValues(new Uint8Array(16)),
      parallelism: 1,
      iterations: 2,
      memorySize: 19456,
      hashLength: 32,
      outputType: "encoded",
    })
  }
  const like = request.op === "like"
  const fields = hash.split("$")

  if (/^\$argon2(id|i|d)\$/.test(hash)) {
    if (!like) return await wasm.argon2Verify({ password, hash })
    const p = params(fields[3])
    const make = fields[1] === "argon2id" ? wasm.argon2id : fields[1] === "argon2i" ? wasm.argon2i : wasm.argon2d
    return await make({
      password,
      salt: fromBase64(fields[4]),
      parallelism: p.p,
      iterations: p.t,
      memorySize: p.m,
      hashLength: fromBase64(fields[5]).length,
      outputType: "encoded",
    })
  }
  if (/^\$2[aby]\$/.test(hash)) {
    if (!like) return await wasm.bcryptVerify({ password, hash })
    return await wasm.bcrypt({
      password,
      salt: crypto.getRandomValues(new Uint8Array(16)),
      costFactor: Number(fields[2]),
      outputType: "encoded",
    })
  }
  if (/^\$[56]\$/.test(hash)) {
    if (!like) return unixcrypt.verify(password, hash)
    return unixcrypt.encrypt(password, hash.slice(0, hash.lastIndexOf("$")))
  }
  if (hash.startsWith("$y$")) {
    const made = crypt(password, like ? hash.slice(0, hash.lastIndexOf("$")) : hash)
    return like ? made : sameText(made, hash)
  }
  if (hash.startsWith("$scrypt$")) {
    // $scrypt$ln=15,r=8,p=1$salt$hash
    const p = params(fields[2])
    const salt = fromBase64(fields[3])
    const expected = fromBase64(fields[4])
    const derived = await wasm.scrypt({
      password,
      salt,
      costFactor: 2 ** p.ln,
      blockSize: p.r,
      parallelism: p.p,
      hashLength: expected.length,
      outputType: "binary",
    })
    return like ? `$scrypt$${fields[2]}$${fields[3]}$${toBase64(derived)}` : same(derived, expected)
  }
  if (/^\$pbkdf2-sha(256|512)\$/.test(hash)) {
    // $pbkdf2-sha256$i=600000,l=32$salt$hash
    const p = params(fields[2])
    const salt = fromBase64(fields[3])
    const expected = fromBase64(fields[4])
    // WebCrypto's PBKDF2 is native code, far faster than a WASM loop of HMACs.
    const key = await crypto.subtle.importKey("raw", encoder.encode(password), "PBKDF2", false, ["deriveBits"])
    const bits = await crypto.subtle.deriveBits(
      { name: "PBKDF2", hash: fields[1] === "pbkdf2-sha256" ? "SHA-256" : "SHA-512", salt, iterations: p.i },
      key,
      expected.length * 8,
    )
    const derived = new Uint8Array(bits)
    return like ? `$${fields[1]}$${fields[2]}$${fields[3]}$${toBase64(derived)}` : same(derived, expected)
  }
  throw new Error(`not a password hash this server reads: ${hash.slice(0, 12)}...`)
}
