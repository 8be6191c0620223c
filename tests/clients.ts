/**
 * Helpers for the real-client tests (`clients_*_test.ts`): each client is the program a user runs
 * (Debian's packages, Python's ftplib), driven by its own command line, and every transfer is
 * checked byte for byte with SHA-256.
 */
import { sha256 } from "./helpers.ts"

const decoder = new TextDecoder()

/**
 * Whether `binary` runs here. A missing one makes its tests skip, saying which package to
 * install: never a silent pass. `.ci/run` installs them all.
 */
export const installed = (binary: string, debianPackage: string): boolean => {
  try {
    new Deno.Command(binary, { args: ["--version"], stdin: "null", stdout: "null", stderr: "null" }).outputSync()
    return true
  } catch {
    console.warn(`${binary} is not installed (apt-get install -y ${debianPackage}): its client tests skip`)
    return false
  }
}

/** What a client run printed, and how it ended. */
export interface ClientRun {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Run a client to its end, `input` on its standard input; killed (and the test failed) after `timeoutMs`. */
export const runClient = async (
  program: string,
  args: ReadonlyArray<string>,
  options: { input?: string; cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<ClientRun> => {
  const child = new Deno.Command(program, {
    args: [...args],
    cwd: options.cwd,
    env: options.env,
    stdin: options.input === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn()
  if (options.input !== undefined) {
    const writer = child.stdin.getWriter()
    await writer.write(new TextEncoder().encode(options.input))
    await writer.close()
  }
  const timeoutMs = options.timeoutMs ?? 60_000
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    child.kill("SIGKILL")
  }, timeoutMs)
  const output = await child.output()
  clearTimeout(timer)
  const run = { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) }
  if (timedOut) throw new Error(`${program} ran over ${timeoutMs} ms:\n${run.stdout}\n${run.stderr}`)
  return run
}

/** SHA-256 of a file's bytes. */
export const fileHash = async (path: string): Promise<string> => await sha256(await Deno.readFile(path))

/** Bytes the tests make random, so that a transfer that drops or repeats a block shows. */
export const randomFile = async (path: string, size: number): Promise<string> => {
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)))
  await Deno.writeFile(path, bytes)
  return await sha256(bytes)
}

/** 10 MiB: bigger than every socket buffer, and quick on loopback. */
export const LARGE = 10 << 20

/**
 * The tree the sync tools copy: UTF-8 names, names with spaces, empty files, a 10 MiB file, nested
 * directories and an empty one.
 */
export const makeTree = async (root: string): Promise<void> => {
  await Deno.mkdir(`${root}/sub dir/nested é`, { recursive: true })
  await Deno.mkdir(`${root}/empty dir`, { recursive: true })
  await randomFile(`${root}/big file.bin`, LARGE)
  await Deno.writeFile(`${root}/empty.bin`, new Uint8Array(0))
  await Deno.writeTextFile(`${root}/ünïcödé ✓ 日本.txt`, "unicode names\n")
  await Deno.writeTextFile(`${root}/sub dir/a b c.txt`, "spaces\n")
  await Deno.writeFile(`${root}/sub dir/zero.txt`, new Uint8Array(0))
  await randomFile(`${root}/sub dir/nested é/deep.bin`, 100_000)
}

/** Every regular file under `root` by relative path, with its SHA-256; and every directory. */
export const manifest = async (root: string): Promise<{ files: Record<string, string>; dirs: string[] }> => {
  const files: Record<string, string> = {}
  const dirs: string[] = []
  const walk = async (dir: string, prefix: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`
      const relative = prefix === "" ? entry.name : `${prefix}/${entry.name}`
      if (entry.isDirectory) {
        dirs.push(relative)
        await walk(path, relative)
      } else if (entry.isFile) {
        files[relative] = await fileHash(path)
      }
    }
  }
  await walk(root, "")
  return { files: Object.fromEntries(Object.entries(files).sort()), dirs: dirs.sort() }
}

/** A fresh temporary directory for `f`, removed afterwards. */
export const withTempDir = async <A>(f: (dir: string) => Promise<A>): Promise<A> => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-client-" }))
  try {
    return await f(dir)
  } finally {
    await Deno.remove(dir, { recursive: true })
  }
}
