/**
 * What the S3 filesystem does with whole objects: read one as a byte stream, copy one (a
 * multipart copy above S3's 5 GiB single-copy limit), and rename a small directory object by
 * object.
 *
 * @module
 */
import { FilesystemError } from "../errors.ts"
import type { S3Bucket } from "./_s3_client.ts"

/** The largest object one CopyObject copies (S3's limit). */
export const MAX_SINGLE_COPY = 5 * 1024 ** 3
/** Bytes per part of a multipart copy (S3 takes up to 5 GiB; 10,000 parts at most). */
const COPY_PART = 1024 ** 3

/**
 * A byte stream (BYOB reads supported) over a response body; a body that fails midway (the
 * service went away) fails the stream with a `FilesystemError` (451), not a connection error.
 */
export const byteStream = (path: string, body: ReadableStream<Uint8Array> | null): ReadableStream<Uint8Array> => {
  const reader = body?.getReader()
  let pending: Uint8Array | undefined
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: 64 << 10,
    async pull(controller) {
      const request = controller.byobRequest!
      if (pending === undefined || pending.length === 0) {
        let result: ReadableStreamReadResult<Uint8Array> | undefined
        try {
          result = await reader?.read()
        } catch (cause) {
          throw new FilesystemError({
            path,
            reason: "Unavailable",
            detail: "Storage unavailable: the connection to S3 broke while reading.",
            cause,
          })
        }
        if (result === undefined || result.done) {
          controller.close()
          request.respond(0)
          return
        }
        pending = result.value
      }
      const view = request.view!
      const n = Math.min(view.byteLength, pending.length)
      new Uint8Array(view.buffer, view.byteOffset, n).set(pending.subarray(0, n))
      pending = pending.subarray(n)
      request.respond(n)
    },
    cancel: () => reader?.cancel(),
  })
}

/** Copy `from` to `to` in `bucket`: one CopyObject, or UploadPartCopy parts above 5 GiB. */
export const copyObject = async (
  bucket: S3Bucket,
  from: string,
  to: string,
  size: number,
  path: string,
  maxSingleCopy = MAX_SINGLE_COPY,
): Promise<void> => {
  if (size <= maxSingleCopy) {
    await bucket.copy(from, to, path)
    return
  }
  const partSize = Math.max(Math.min(COPY_PART, maxSingleCopy), Math.ceil(size / 10_000))
  const id = await bucket.createUpload(to, path)
  try {
    const etags: string[] = []
    for (let start = 0, part = 1; start < size; start += partSize, part++) {
      const end = Math.min(size, start + partSize) - 1
      etags.push(await bucket.copyPart(to, path, id, part, from, [start, end]))
    }
    await bucket.completeUpload(to, path, id, etags)
  } catch (error) {
    await bucket.abortUpload(to, path, id).catch(() => undefined)
    throw error
  }
}

/**
 * Rename the directory `from` (a key prefix ending in `/`) to `to` by copying each object, then
 * deleting the originals. Refused above `max` objects: S3 has no rename, and a big tree would take
 * long and could be left half-moved. A copy that fails removes the copies made so far, leaving the
 * directory as it was.
 */
export const renameDirectory = async (
  bucket: S3Bucket,
  from: string,
  to: string,
  path: string,
  max: number,
  maxSingleCopy = MAX_SINGLE_COPY,
): Promise<void> => {
  const objects: { key: string; size: number }[] = []
  let next: string | undefined
  do {
    const page = await bucket.list(from, path, { next, flat: true })
    objects.push(...page.objects)
    if (objects.length > max) {
      throw new FilesystemError({
        path,
        reason: "PermissionDenied",
        detail: `Can't rename a directory of more than ${max} objects on this storage: move its files instead.`,
      })
    }
    next = page.next
  } while (next !== undefined)
  const copied: string[] = []
  try {
    for (const object of objects) {
      const target = to + object.key.slice(from.length)
      await copyObject(bucket, object.key, target, object.size, path, maxSingleCopy)
      copied.push(target)
    }
  } catch (error) {
    for (const key of copied) await bucket.delete(key, path).catch(() => undefined)
    throw error
  }
  for (const object of objects) await bucket.delete(object.key, path)
}
