/**
 * The S3 requests the S3 filesystem makes, signed with `aws4fetch` (SigV4 on WebCrypto), retried
 * with backoff when the service is busy or unreachable, and their failures turned into
 * {@link FilesystemError}s: a missing key is `NotFound`, a refusal `PermissionDenied`, a service
 * that keeps failing `Unavailable` (451). Responses are parsed with `fast-xml-parser`.
 *
 * @module
 */
import { AwsClient } from "aws4fetch"
import { Buffer } from "node:buffer"
import http from "node:http"
import https from "node:https"
import { XMLParser } from "fast-xml-parser"
import { FilesystemError, type FilesystemErrorReason } from "../errors.ts"

/** Access keys, as in the `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` variables. */
export interface S3Credentials {
  readonly accessKeyId: string
  readonly secretAccessKey: string
  readonly sessionToken?: string
}

/** Where the service is and how to reach it. */
export interface S3Endpoint {
  /** `https://s3.<region>.amazonaws.com` unless given (MinIO, Ceph, Garage, R2, ...). */
  readonly endpoint?: string
  /** The region requests are signed for; default `us-east-1`. */
  readonly region?: string
  /** Address buckets as `endpoint/bucket/key` rather than `bucket.endpoint/key` (most self-hosted services). */
  readonly pathStyle?: boolean
  readonly credentials: S3Credentials
  /** Tries after the first for a request the service answered 500, 502, 503, 504 or 429, or that failed to connect; default 4. */
  readonly retries?: number
  /** Milliseconds one request may take before it counts as failed; default 120000. */
  readonly requestTimeout?: number
}

/** The URL of the service for `region`: AWS's unless an endpoint is given. */
export const endpointUrl = (endpoint: Pick<S3Endpoint, "endpoint" | "region">): URL =>
  new URL(endpoint.endpoint ?? `https://s3.${endpoint.region ?? "us-east-1"}.amazonaws.com`)

/** One entry of a ListObjectsV2 page. */
export interface ListedObject {
  readonly key: string
  readonly size: number
  readonly lastModified: Date | null
}

/** One ListObjectsV2 page. */
export interface ListPage {
  readonly objects: ReadonlyArray<ListedObject>
  readonly prefixes: ReadonlyArray<string>
  readonly next: string | undefined
}

const RETRIED = new Set([500, 502, 503, 504, 429])
const BACKOFF_MS = 100

const xml = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: false,
  isArray: (name) => name === "Contents" || name === "CommonPrefixes",
})

type XmlNode = Record<string, unknown>
const child = (node: unknown, name: string): XmlNode | undefined =>
  typeof node === "object" && node !== null ? (node as XmlNode)[name] as XmlNode | undefined : undefined
const text = (node: unknown, name: string): string | undefined => {
  const value = typeof node === "object" && node !== null ? (node as XmlNode)[name] : undefined
  return typeof value === "string" ? value : undefined
}

/** An S3 key in a URL path: each segment percent-encoded (RFC 3986), the slashes kept. */
const encodeKey = (key: string): string =>
  key.split("/").map((segment) =>
    encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  ).join("/")

const reasonOf = (status: number, code: string | undefined): FilesystemErrorReason =>
  code === "NoSuchKey" || code === "NoSuchBucket" || code === "NoSuchUpload" || status === 404
    ? "NotFound"
    : code === "AccessDenied" || code === "InvalidAccessKeyId" || code === "SignatureDoesNotMatch" ||
        status === 403
    ? "PermissionDenied"
    : code === "InvalidRange" || status === 416
    ? "InvalidOffset"
    : code === "EntityTooLarge"
    ? "QuotaExceeded"
    : RETRIED.has(status)
    ? "Unavailable"
    : "Other"

/** What a request sends besides its method and key. */
export interface RequestOptions {
  readonly query?: Record<string, string>
  readonly headers?: Record<string, string>
  readonly body?: Uint8Array | string
  /** Aborts the request (the upload it belongs to was given up). */
  readonly signal?: AbortSignal
}

/** Requests to one bucket of an S3-compatible service. */
export class S3Bucket {
  readonly #client: AwsClient
  readonly #base: URL
  readonly #pathStyle: boolean
  readonly #retries: number
  readonly #timeout: number

  constructor(readonly name: string, endpoint: S3Endpoint) {
    const { credentials } = endpoint
    this.#client = new AwsClient({
      accessKeyId: credentials.accessKeyId,
      secretAccessKey: credentials.secretAccessKey,
      sessionToken: credentials.sessionToken,
      service: "s3",
      region: endpoint.region ?? "us-east-1",
      retries: 0,
    })
    this.#pathStyle = endpoint.pathStyle ?? false
    const base = endpointUrl(endpoint)
    if (!this.#pathStyle) base.hostname = `${name}.${base.hostname}`
    this.#base = base
    this.#retries = endpoint.retries ?? 4
    this.#timeout = endpoint.requestTimeout ?? 120_000
  }

  /** The host requests go to (what `--allow-net` must grant). */
  get host(): string {
    return this.#base.host
  }

  #url(key: string, query: Record<string, string> = {}): string {
    const path = this.#base.pathname.replace(/\/$/, "")
    const bucket = this.#pathStyle ? `/${encodeKey(this.name)}` : ""
    const url = new URL(this.#base)
    url.pathname = `${path}${bucket}/${encodeKey(key)}`
    for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value)
    return url.toString()
  }

  /**
   * Send a request, retrying with exponential backoff (with jitter) while the service is busy or
   * unreachable; the response is returned for any other status. `path` is the client's path: the
   * errors, which clients see, name it rather than the key (which would show where homes are kept).
   */
  async send(method: string, key: string, path: string, options: RequestOptions = {}): Promise<Response> {
    let last = ""
    for (let attempt = 0; attempt <= this.#retries; attempt++) {
      if (attempt > 0) await delay(Math.random() * BACKOFF_MS * 2 ** attempt, options.signal)
      const timeout = AbortSignal.timeout(this.#timeout)
      const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
      try {
        // Signed without the body: S3 takes UNSIGNED-PAYLOAD, so the body need not be read twice.
        const signed = await this.#client.sign(this.#url(key, options.query), { method, headers: options.headers })
        const { body } = options
        const response = body instanceof Uint8Array
          ? await sendBytes(new URL(signed.url), method, signed.headers, body, signal)
          : await fetch(signed.url, { method, headers: signed.headers, body, signal })
        if (!RETRIED.has(response.status)) return response
        const code = errorCode(await response.text())
        last = `HTTP ${response.status}${code === undefined ? "" : ` ${code}`}`
      } catch (error) {
        if (options.signal?.aborted) throw error
        last = timeout.aborted
          ? `no answer within ${this.#timeout / 1000} s`
          : String((error as Error).message ?? error)
      }
    }
    throw new FilesystemError({
      path,
      reason: "Unavailable",
      detail: `Storage unavailable (S3 ${method} ${path}: ${last}, ${this.#retries + 1} tries): try again later.`,
    })
  }

  /** Send, and fail unless the status is 2xx (or one of `accept`). */
  async ok(
    method: string,
    key: string,
    path: string,
    options: RequestOptions = {},
    accept: ReadonlyArray<number> = [],
  ) {
    const response = await this.send(method, key, path, options)
    if (response.ok || accept.includes(response.status)) return response
    throw await failure(response, path, `${method} ${path}`)
  }

  /** HEAD: the object's size and time, or `undefined` when there is none. */
  async head(key: string, path: string): Promise<ListedObject | undefined> {
    const response = await this.ok("HEAD", key, path, {}, [404])
    if (response.status === 404) return undefined
    const modified = response.headers.get("last-modified")
    return {
      key,
      size: Number(response.headers.get("content-length") ?? 0),
      lastModified: modified === null ? null : new Date(modified),
    }
  }

  /** One ListObjectsV2 page of `prefix`, grouped at `/` unless `flat`. */
  async list(prefix: string, path: string, options: { next?: string; max?: number; flat?: boolean } = {}) {
    const query: Record<string, string> = { "list-type": "2", prefix }
    if (!options.flat) query.delimiter = "/"
    if (options.max !== undefined) query["max-keys"] = String(options.max)
    if (options.next !== undefined) query["continuation-token"] = options.next
    const body = await (await this.ok("GET", "", path, { query })).text()
    const result = child(xml.parse(body), "ListBucketResult")
    const objects = ((result?.Contents ?? []) as unknown[]).map((entry): ListedObject => {
      const modified = text(entry, "LastModified")
      return {
        key: text(entry, "Key") ?? "",
        size: Number(text(entry, "Size") ?? 0),
        lastModified: modified === undefined ? null : new Date(modified),
      }
    })
    const prefixes = ((result?.CommonPrefixes ?? []) as unknown[]).map((entry) => text(entry, "Prefix") ?? "")
    const truncated = text(result, "IsTruncated") === "true"
    return { objects, prefixes, next: truncated ? text(result, "NextContinuationToken") : undefined } as ListPage
  }

  /** A 200 answer that carries an error in its body (CompleteMultipartUpload, CopyObject) fails too. */
  async xmlOk(method: string, key: string, path: string, options: RequestOptions = {}): Promise<XmlNode> {
    const response = await this.ok(method, key, path, options)
    const parsed = xml.parse(await response.text()) as XmlNode
    const error = child(parsed, "Error")
    if (error !== undefined) {
      const code = text(error, "Code")
      throw new FilesystemError({
        path,
        reason: reasonOf(500, code) === "Unavailable" ? "Unavailable" : reasonOf(200, code),
        detail: `S3 ${method} ${path}: ${code ?? "error"}${describe(text(error, "Message"))}`,
      })
    }
    return parsed
  }

  /** CopyObject (up to 5 GiB). */
  copy(from: string, to: string, path: string): Promise<XmlNode> {
    return this.xmlOk("PUT", to, path, { headers: { "x-amz-copy-source": this.copySource(from) } })
  }

  /** The `x-amz-copy-source` of a key of this bucket. */
  copySource(key: string): string {
    return `/${encodeKey(this.name)}/${encodeKey(key)}`
  }

  async createUpload(key: string, path: string, signal?: AbortSignal): Promise<string> {
    const parsed = await this.xmlOk("POST", key, path, { query: { uploads: "" }, signal })
    const id = text(child(parsed, "InitiateMultipartUploadResult"), "UploadId")
    if (id === undefined) throw new FilesystemError({ path, reason: "Other", detail: "S3 gave no upload id." })
    return id
  }

  /** The ETag of a part, as CompleteMultipartUpload wants it back. */
  async uploadPart(key: string, path: string, id: string, part: number, body: Uint8Array, signal?: AbortSignal) {
    const response = await this.ok("PUT", key, path, {
      query: { partNumber: String(part), uploadId: id },
      body,
      signal,
    })
    await response.body?.cancel()
    return response.headers.get("etag") ?? ""
  }

  /** UploadPartCopy: a range of another object as a part; its ETag. */
  async copyPart(key: string, path: string, id: string, part: number, source: string, range: [number, number]) {
    const parsed = await this.xmlOk("PUT", key, path, {
      query: { partNumber: String(part), uploadId: id },
      headers: {
        "x-amz-copy-source": this.copySource(source),
        "x-amz-copy-source-range": `bytes=${range[0]}-${range[1]}`,
      },
    })
    return text(child(parsed, "CopyPartResult"), "ETag") ?? ""
  }

  completeUpload(key: string, path: string, id: string, etags: ReadonlyArray<string>): Promise<XmlNode> {
    const parts = etags.map((etag, i) =>
      `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeXml(etag)}</ETag></Part>`
    )
    return this.xmlOk("POST", key, path, {
      query: { uploadId: id },
      body: `<CompleteMultipartUpload>${parts.join("")}</CompleteMultipartUpload>`,
      headers: { "content-type": "application/xml" },
    })
  }

  async abortUpload(key: string, path: string, id: string): Promise<void> {
    const response = await this.ok("DELETE", key, path, { query: { uploadId: id } }, [404])
    await response.body?.cancel()
  }

  async put(key: string, path: string, body: Uint8Array): Promise<void> {
    const response = await this.ok("PUT", key, path, { body })
    await response.body?.cancel()
  }

  async delete(key: string, path: string): Promise<void> {
    const response = await this.ok("DELETE", key, path, {}, [404])
    await response.body?.cancel()
  }
}

const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) }

/**
 * Send a request with a byte body (an object, a part) through `node:http`, which writes the bytes
 * as they are: `fetch` copies each body, and sending 8 MiB parts through it raised the server's
 * peak RSS by about 100 MiB, through `node:http` by under 10 MiB (measured on Deno 2.9). The answer
 * (an empty body or a short XML document) is read whole.
 */
const sendBytes = (url: URL, method: string, headers: Headers, body: Uint8Array, signal: AbortSignal) =>
  new Promise<Response>((resolve, reject) => {
    const secure = url.protocol === "https:"
    const request = (secure ? https : http).request(url, {
      method,
      headers: { ...Object.fromEntries(headers), "content-length": String(body.length) },
      agent: secure ? agents.https : agents.http,
    }, (response) => {
      const chunks: Uint8Array[] = []
      response.on("data", (chunk: Uint8Array) => chunks.push(chunk))
      response.on("error", reject)
      response.on("end", () => {
        const answer = new Headers()
        for (const [name, value] of Object.entries(response.headers)) {
          if (value !== undefined) answer.set(name, Array.isArray(value) ? value.join(", ") : value)
        }
        const status = response.statusCode ?? 500
        const empty = chunks.length === 0 || status === 204 || status === 304
        resolve(new Response(empty ? null : Buffer.concat(chunks), { status, headers: answer }))
      })
    })
    const onAbort = () => request.destroy(signal.reason)
    signal.addEventListener("abort", onAbort, { once: true })
    request.on("close", () => signal.removeEventListener("abort", onAbort))
    request.on("error", reject)
    request.end(body)
  })

const escapeXml = (value: string): string => value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

const describe = (message: string | undefined) => (message === undefined || message === "" ? "" : ` (${message})`)

const errorCode = (body: string): string | undefined => {
  try {
    return text(child(xml.parse(body), "Error"), "Code")
  } catch {
    return undefined
  }
}

/** The {@link FilesystemError} of an error response. */
export const failure = async (response: Response, path: string, what: string): Promise<FilesystemError> => {
  const body = await response.text().catch(() => "")
  let code: string | undefined
  let message: string | undefined
  try {
    const error = child(xml.parse(body), "Error")
    code = text(error, "Code")
    message = text(error, "Message")
  } catch {
    // Not XML (a proxy's page, say): the status alone says what happened.
  }
  const reason = reasonOf(response.status, code)
  return new FilesystemError({
    path,
    reason,
    detail: reason === "NotFound"
      ? undefined
      : `S3 ${what}: HTTP ${response.status}${code === undefined ? "" : ` ${code}`}${describe(message)}`,
  })
}

const delay = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal!.reason)
    }
    signal?.addEventListener("abort", onAbort, { once: true })
  })
