/**
 * An upload to S3 with bounded memory: bytes are gathered into part buffers of `partSize`; a file
 * that fits in one is stored with one PUT when it is complete, a larger one as a multipart upload
 * whose parts are sent while the next ones fill, at most `partsInFlight` buffers in all (the
 * client is held back by TCP flow control meanwhile). The object appears only when the upload is
 * completed; one that is given up is aborted, and leaves nothing behind.
 *
 * @module
 */
import { FilesystemError } from "../errors.ts"
import type { S3Bucket } from "./_s3_client.ts"

/** The smallest part S3 takes (all but the last part of a multipart upload). */
export const MIN_PART_SIZE = 5 << 20

/** How uploads use memory. */
export interface UploadLimits {
  /** Bytes per part, at least 5 MiB; files up to this size are stored with one PUT. */
  readonly partSize: number
  /** Part buffers in all: one filling while the others are sent. */
  readonly partsInFlight: number
}

/** The most parts of one multipart upload (S3's limit). */
const MAX_PARTS = 10_000

/** One upload to `key`; `path` is the client's path, for errors. */
export class S3Upload {
  #buffer: Uint8Array
  #filled = 0
  readonly #spare: Uint8Array[] = []
  readonly #sending = new Set<Promise<void>>()
  readonly #etags: string[] = []
  #id: Promise<string> | undefined
  #failure: unknown
  #stored = 0
  #done = false
  readonly #abort = new AbortController()

  constructor(
    readonly bucket: S3Bucket,
    readonly key: string,
    readonly path: string,
    readonly limits: UploadLimits,
  ) {
    this.#buffer = new Uint8Array(limits.partSize)
  }

  /** Bytes taken so far. */
  get written(): number {
    return this.#stored
  }

  /** Whether a multipart upload was started (and must be completed or aborted). */
  get started(): boolean {
    return this.#id !== undefined
  }

  /** Take `chunk`, sending a part whenever a buffer fills; waits while every buffer is full or being sent. */
  async write(chunk: Uint8Array): Promise<void> {
    for (let offset = 0; offset < chunk.length;) {
      if (this.#failure !== undefined) throw this.#failure
      const n = Math.min(chunk.length - offset, this.#buffer.length - this.#filled)
      this.#buffer.set(chunk.subarray(offset, offset + n), this.#filled)
      this.#filled += n
      this.#stored += n
      offset += n
      if (this.#filled === this.#buffer.length) await this.#sendPart()
    }
  }

  /** Send the full buffer as the next part, and get an empty one (waiting for a sent part's buffer). */
  async #sendPart(): Promise<void> {
    this.#launch()
    const next = this.#spare.pop()
    if (next !== undefined) {
      this.#buffer = next
      return
    }
    if (this.#sending.size < this.limits.partsInFlight) {
      this.#buffer = new Uint8Array(this.limits.partSize)
      return
    }
    await Promise.race(this.#sending)
    if (this.#failure !== undefined) throw this.#failure
    this.#buffer = this.#spare.pop() ?? new Uint8Array(this.limits.partSize)
  }

  /** Start sending the buffer's bytes as the next part (starting the multipart upload first). */
  #launch(): void {
    const number = this.#etags.length + 1
    if (number > MAX_PARTS) {
      throw new FilesystemError({
        path: this.path,
        reason: "QuotaExceeded",
        detail: `Storage allocation exceeded: at most ${MAX_PARTS} parts of ${this.limits.partSize} bytes.`,
      })
    }
    this.#id ??= this.bucket.createUpload(this.key, this.path, this.#abort.signal)
    const buffer = this.#buffer
    const body = buffer.subarray(0, this.#filled)
    this.#filled = 0
    this.#etags.push("")
    const sending: Promise<void> = this.#id
      .then((id) => this.bucket.uploadPart(this.key, this.path, id, number, body, this.#abort.signal))
      .then((etag) => {
        this.#etags[number - 1] = etag
        this.#spare.push(buffer)
      }, (error) => {
        this.#failure ??= error
      })
      .finally(() => this.#sending.delete(sending))
    this.#sending.add(sending)
  }

  /** Store the object: one PUT for a small file, else the last part and CompleteMultipartUpload. */
  async complete(): Promise<void> {
    if (this.#id === undefined) {
      await this.bucket.put(this.key, this.path, this.#buffer.subarray(0, this.#filled))
      this.#done = true
      return
    }
    if (this.#filled > 0) this.#launch()
    await Promise.all(this.#sending)
    if (this.#failure !== undefined) throw this.#failure
    await this.bucket.completeUpload(this.key, this.path, await this.#id, this.#etags)
    this.#done = true
  }

  /**
   * Give up: stop the parts being sent and abort the multipart upload, so that nothing is left
   * behind. Returns what went wrong (to be logged), if anything.
   */
  async abort(): Promise<string | undefined> {
    if (this.#done || this.#id === undefined) return undefined
    this.#abort.abort()
    await Promise.allSettled(this.#sending)
    const id = await this.#id.catch(() => undefined)
    if (id === undefined) return undefined
    try {
      await this.bucket.abortUpload(this.key, this.path, id)
      return undefined
    } catch (error) {
      return `could not abort the multipart upload ${id} of ${this.key}: ${(error as Error).message}`
    }
  }
}
