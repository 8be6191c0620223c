/**
 * Checksums of files (HASH, XCRC, XMD5, XSHA1, XSHA256, XSHA512): the algorithms, and the loop
 * that reads a file through a {@link ReadHandle} and feeds it to one, in bounded memory (one
 * buffer of at most 1 MiB), with an `AbortSignal` (ABOR, the session's end) and the download
 * bandwidth limits of a RETR.
 *
 * MD5 and the SHA family are `node:crypto`'s `createHash`, CRC-32 is `node:zlib`'s `crc32` (the
 * zlib polynomial, as `cksum -a crc32b`, Python's `zlib.crc32` and FileZilla's XCRC compute it).
 * Every update runs on the event loop: a 1 MiB step of SHA-256 takes about 2-3 ms, which other
 * sessions wait at most, and the server's `maxHashes` (counted by `Admission`) bounds how many run.
 *
 * @module
 */
import { createHash } from "node:crypto"
import { crc32 } from "node:zlib"
import type { ReadHandle } from "../fs/filesystem.ts"
import type { Progress } from "./loops.ts"
import type { Throttle } from "./throttle.ts"

/** The algorithms, by their names in HASH (the IANA hash names the draft uses), in FEAT's order. */
export const CHECKSUM_ALGORITHMS = ["SHA-256", "SHA-512", "SHA-1", "MD5", "CRC32"] as const

/** One algorithm's name. */
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number]

/** The algorithm HASH uses until `OPTS HASH` picks another. */
export const DEFAULT_CHECKSUM: ChecksumAlgorithm = "SHA-256"

/**
 * The algorithm named `name` (any case), or `undefined`.
 *
 * @example
 * ```ts
 * import { checksumAlgorithm } from "./checksum.ts"
 * console.log(checksumAlgorithm("sha-512")) // "SHA-512"
 * console.log(checksumAlgorithm("SHA-3")) // undefined
 * ```
 */
export const checksumAlgorithm = (name: string): ChecksumAlgorithm | undefined =>
  CHECKSUM_ALGORITHMS.find((algorithm) => algorithm === name.toUpperCase())

interface Digest {
  update(bytes: Uint8Array): void
  hex(): string
}

const NODE_NAMES: Readonly<Record<Exclude<ChecksumAlgorithm, "CRC32">, string>> = {
  "SHA-256": "sha256",
  "SHA-512": "sha512",
  "SHA-1": "sha1",
  MD5: "md5",
}

const digestOf = (algorithm: ChecksumAlgorithm): Digest => {
  if (algorithm === "CRC32") {
    let crc = 0
    return {
      update: (bytes) => void (crc = crc32(bytes, crc)),
      hex: () => crc.toString(16).padStart(8, "0"),
    }
  }
  const hash = createHash(NODE_NAMES[algorithm])
  return { update: (bytes) => void hash.update(bytes), hex: () => hash.digest("hex") }
}

/** Bytes read per step: the memory a checksum holds, and the longest a step keeps the event loop. */
const STEP = 1 << 20

/** What {@link checksumOf} needs besides the file. */
export interface ChecksumOptions {
  readonly signal: AbortSignal
  /** Bytes to read from the handle's offset. */
  readonly length: number
  /** Bytes read so far, for STAT and the log. */
  readonly progress: Progress
  /** The download limits a RETR of the same user would wait on, if any. */
  readonly throttle?: Throttle
}

/**
 * Reads of at most `max` bytes (fewer at the end), into one reused buffer of `size` bytes: a byte
 * stream (local files are) reads straight into it. What a read returns is valid until the next.
 */
const readerOf = (readable: ReadableStream<Uint8Array>, size: number) => {
  try {
    const byob = readable.getReader({ mode: "byob" })
    let buffer = new ArrayBuffer(size)
    return {
      read: async (max: number): Promise<Uint8Array | undefined> => {
        const { done, value } = await byob.read(new Uint8Array(buffer, 0, Math.min(size, max)))
        if (value !== undefined) buffer = value.buffer as ArrayBuffer
        return done || value === undefined || value.length === 0 ? undefined : value
      },
      cancel: () => byob.cancel().catch(() => undefined),
    }
  } catch {
    const reader = readable.getReader()
    let rest: Uint8Array | undefined
    return {
      read: async (max: number): Promise<Uint8Array | undefined> => {
        const chunk = rest ?? (await reader.read()).value
        if (chunk === undefined) return undefined
        const limit = Math.min(size, max)
        rest = chunk.length > limit ? chunk.subarray(limit) : undefined
        return chunk.subarray(0, limit)
      },
      cancel: () => reader.cancel().catch(() => undefined),
    }
  }
}

/**
 * The checksum of `options.length` bytes of `file`, as lower-case hex (CRC-32 as 8 digits).
 * Rejects with the signal's reason when it aborts (checked after every step), and with the
 * file's own error when a read fails.
 */
export const checksumOf = async (
  file: ReadHandle,
  algorithm: ChecksumAlgorithm,
  options: ChecksumOptions,
): Promise<string> => {
  const { signal, throttle, progress } = options
  const digest = digestOf(algorithm)
  const step = Math.min(STEP, throttle?.chunk ?? STEP)
  const reader = readerOf(file.readable, Math.max(1, Math.min(step, options.length)))
  try {
    for (let left = options.length; left > 0;) {
      signal.throwIfAborted()
      const bytes = await reader.read(left)
      signal.throwIfAborted()
      if (bytes === undefined) break
      if (throttle !== undefined) await throttle.take(bytes.length, signal)
      digest.update(bytes)
      progress.bytes += bytes.length
      left -= bytes.length
    }
  } finally {
    await reader.cancel()
  }
  return digest.hex()
}
