/**
 * A real S3-compatible server for the tests: `npm:s3rver` (pinned in deno.json, installed in
 * `node_modules` by Deno) run by Node.js in a child process, its data in a temporary folder, and
 * `rclone`'s S3 backend as an independent client to check what landed in the bucket.
 */
import { makeS3Filesystem, type S3FilesystemOptions } from "../../src/fs/s3.ts"
import type { FilesystemShape } from "../../src/fs/filesystem.ts"

/** s3rver's fixed access key and secret. */
export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } as const

/** A running s3rver. */
export interface S3rver {
  readonly endpoint: string
  readonly port: number
  readonly bucket: string
  /** Where s3rver keeps the bucket's files (pending multipart uploads among them). */
  readonly directory: string
  /** An S3 filesystem over this server's bucket. */
  filesystem(options?: Partial<S3FilesystemOptions>): FilesystemShape
  /** Kill the server (a service that went away); `start` brings it back on the same port and data. */
  stop(): Promise<void>
  start(): Promise<void>
  /** Stop it and remove its data. */
  close(): Promise<void>
}

/** The script that runs s3rver under Node.js: `node --openssl-legacy-provider SCRIPT DIRECTORY BUCKET PORT`. */
export const S3RVER_SCRIPT: string = new URL("./s3rver_node.mjs", import.meta.url).pathname
const child = S3RVER_SCRIPT
const repository = new URL("../../", import.meta.url).pathname

/** Whether Node.js is installed; when not, the S3 tests are skipped, saying so (once). */
let nodeChecked: boolean | undefined
export const hasNode = async (): Promise<boolean> => {
  if (nodeChecked === undefined) {
    nodeChecked = await new Deno.Command("node", { args: ["--version"], stdout: "null", stderr: "null" }).output()
      .then((o) => o.success, () => false)
    if (!nodeChecked) console.warn("SKIP: Node.js is not installed (apt-get install -y nodejs): no s3rver, no S3 tests")
  }
  return nodeChecked
}

/** s3rver in `node_modules`, where Deno puts the packages of deno.json (installing them if it has not yet). */
export const installed = async (): Promise<void> => {
  const exists = await Deno.stat(`${repository}node_modules/s3rver/package.json`).then(() => true, () => false)
  if (exists) return
  const output = await new Deno.Command(Deno.execPath(), { args: ["install"], cwd: repository, stdout: "null" })
    .output()
  if (!output.success) throw new Error(`deno install failed: ${new TextDecoder().decode(output.stderr)}`)
}

const spawn = async (directory: string, bucket: string, port: number) => {
  await installed()
  const process = new Deno.Command("node", {
    args: ["--openssl-legacy-provider", child, directory, bucket, String(port)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn()
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader()
  let text = ""
  while (!text.includes("\n")) {
    const { done, value } = await reader.read()
    if (done) throw new Error(`s3rver did not start: ${text}`)
    text += value
  }
  reader.releaseLock()
  // Keep draining stdout so the child never blocks on a full pipe.
  process.stdout.pipeTo(new WritableStream()).catch(() => undefined)
  return { process, port: (JSON.parse(text.slice(0, text.indexOf("\n"))) as { port: number }).port }
}

/**
 * Start s3rver with one bucket, on a free port, its data in a fresh temporary folder. (s3rver
 * 3.7.1 checks access key ids but not SigV4 signatures, so a proxy in front of it may change the
 * Host header.)
 */
export const startS3rver = async (bucket = "ftpd"): Promise<S3rver> => {
  const directory = await Deno.makeTempDir({ prefix: "ftpd-s3rver-" })
  let running: Awaited<ReturnType<typeof spawn>> | undefined = await spawn(directory, bucket, 0)
  const port = running.port
  const endpoint = `http://127.0.0.1:${port}`
  const stop = async () => {
    if (running === undefined) return
    running.process.kill("SIGKILL")
    await running.process.status
    running = undefined
  }
  return {
    endpoint,
    port,
    bucket,
    directory,
    filesystem: (options = {}) =>
      makeS3Filesystem({
        bucket,
        endpoint,
        pathStyle: true,
        credentials: S3RVER_CREDENTIALS,
        retries: 2,
        ...options,
      }),
    stop,
    start: async () => {
      running ??= await spawn(directory, bucket, port)
    },
    close: async () => {
      await stop()
      await Deno.remove(directory, { recursive: true }).catch(() => undefined)
    },
  }
}

/** Whether `rclone` is installed; when not, say which package brings it (once). */
let rcloneChecked: boolean | undefined
export const hasRclone = async (): Promise<boolean> => {
  if (rcloneChecked === undefined) {
    rcloneChecked = await new Deno.Command("rclone", { args: ["version"], stdout: "null", stderr: "null" }).output()
      .then((o) => o.success, () => false)
    if (!rcloneChecked) console.warn("SKIP: rclone is not installed (apt-get install -y rclone): S3 contents unchecked")
  }
  return rcloneChecked
}

/**
 * The environment that makes rclone's remote `s3rver:` the server at `endpoint`, and nothing else
 * of this environment (a CA bundle variable, AWS_CA_BUNDLE, makes it fail).
 */
export const rcloneEnv = (endpoint: string): Record<string, string> => ({
  PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
  RCLONE_CONFIG_S3RVER_TYPE: "s3",
  RCLONE_CONFIG_S3RVER_PROVIDER: "Other",
  RCLONE_CONFIG_S3RVER_ENDPOINT: endpoint,
  RCLONE_CONFIG_S3RVER_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
  RCLONE_CONFIG_S3RVER_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
  RCLONE_CONFIG_S3RVER_FORCE_PATH_STYLE: "true",
  RCLONE_CONFIG_FILE: "/dev/null",
})

/** Run rclone against `server` as the remote `s3rver:`; its stdout. */
export const rclone = async (server: S3rver, ...args: string[]): Promise<Uint8Array> => {
  const output = await new Deno.Command("rclone", {
    args,
    clearEnv: true,
    env: rcloneEnv(server.endpoint),
    stdout: "piped",
    stderr: "piped",
  }).output()
  if (!output.success) throw new Error(`rclone ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`)
  return output.stdout
}

/** The keys of the bucket and their sizes, as rclone lists them. */
export const objects = async (server: S3rver): Promise<Record<string, number>> => {
  const listed = JSON.parse(
    new TextDecoder().decode(await rclone(server, "lsjson", "-R", "--files-only", `s3rver:${server.bucket}`)),
  ) as { Path: string; Size: number }[]
  return Object.fromEntries(listed.map((o) => [o.Path, o.Size]))
}

/** Multipart uploads s3rver holds that were neither completed nor aborted (its `uploads` folders): their keys. */
export const pendingUploads = async (server: S3rver): Promise<{ readonly id: string; readonly key: string }[]> => {
  const found: { id: string; key: string }[] = []
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.isDirectory) continue
      if (entry.name.endsWith("uploads")) {
        for await (const upload of Deno.readDir(`${dir}/${entry.name}`)) {
          const key = await Deno.readTextFile(`${dir}/${entry.name}/${upload.name}/key`).catch(() => "")
          found.push({ id: upload.name, key })
        }
      } else {
        await walk(`${dir}/${entry.name}`)
      }
    }
  }
  await walk(server.directory).catch(() => undefined)
  return found
}
