/**
 * The jail, seen through the server by curl, basic-ftp and a raw client: `..`, absolute paths and
 * symlinks never reach outside the user's home, and nothing is ever written there. A symlink that
 * stays inside works; UnixFilesystem has no jail.
 */
import assert from "node:assert/strict"
import { Readable, Writable } from "node:stream"
import { Client, FTPError } from "basic-ftp"
import type { JailMode } from "../src/fs/local.ts"
import {
  closeQuietly,
  curl,
  RawClient,
  receive,
  type Reply,
  startServer,
  type TestServer,
  writeAllAndClose,
} from "./helpers.ts"

/**
 * A temporary tree, removed afterwards:
 * - `base/x` ("outside x") and `base/outside/secret.txt` ("secret"): outside the home;
 * - `base/home`: the home, with `inner.txt` ("inner"), `idir/in.txt`, and symlinks `flink` →
 *   `outside/secret.txt`, `dlink` → `outside`, `dangling` → `base/nowhere.txt`, `dangling-in` →
 *   `home/missing.txt`, `ilink` → `inner.txt`, `idlink` → `idir`.
 */
interface Tree {
  readonly base: string
  readonly home: string
  readonly outside: string
  readonly server: TestServer
}

const withTree = async (
  f: (tree: Tree) => Promise<void>,
  unix = false,
  jail: JailMode = "descriptor",
): Promise<void> => {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-jail-" }))
  const home = `${base}/home`
  const outside = `${base}/outside`
  await Deno.mkdir(`${home}/idir`, { recursive: true })
  await Deno.mkdir(outside)
  await Deno.writeTextFile(`${base}/x`, "outside x")
  await Deno.writeTextFile(`${outside}/secret.txt`, "secret")
  await Deno.chmod(`${outside}/secret.txt`, 0o644)
  await Deno.writeTextFile(`${home}/inner.txt`, "inner")
  await Deno.writeTextFile(`${home}/idir/in.txt`, "in")
  await Deno.symlink(`${outside}/secret.txt`, `${home}/flink`)
  await Deno.symlink(outside, `${home}/dlink`)
  await Deno.symlink(`${base}/nowhere.txt`, `${home}/dangling`)
  await Deno.symlink(`${home}/missing.txt`, `${home}/dangling-in`)
  await Deno.symlink("inner.txt", `${home}/ilink`)
  await Deno.symlink("idir", `${home}/idlink`)
  let server: TestServer | undefined
  try {
    server = await startServer({ root: home, unix, jail })
    await f({ base, home, outside, server })
  } finally {
    await server?.close()
    await Deno.remove(base, { recursive: true })
  }
}

/** Everything outside the home, with contents, modes and times: must never change. */
const outsideState = async (tree: Tree): Promise<string> => {
  const entries: string[] = []
  for (const dir of [tree.base, tree.outside]) {
    for await (const entry of Deno.readDir(dir)) {
      if (dir === tree.base && (entry.name === "home" || entry.name === "outside")) continue
      const info = await Deno.lstat(`${dir}/${entry.name}`)
      const content = info.isFile ? await Deno.readTextFile(`${dir}/${entry.name}`) : ""
      entries.push(`${dir}/${entry.name} ${info.mode?.toString(8)} ${info.mtime?.getTime()} ${content}`)
    }
  }
  return entries.sort().join("\n")
}

/** A raw client logged in as "user" (every permission); closed after `f`. */
const withRaw = async (tree: Tree, f: (raw: RawClient) => Promise<void>): Promise<void> => {
  const raw = await RawClient.connect(tree.server.port)
  try {
    await raw.login()
    await raw.command("TYPE I")
    await f(raw)
  } finally {
    raw.close()
  }
}

/** STOR/APPE over EPSV: reply codes. */
const send = async (raw: RawClient, command: string, data = "pwned"): Promise<number[]> => {
  const conn = await raw.passive()
  try {
    const first: Reply = await raw.command(command)
    if (first.code !== 150) return [first.code]
    await writeAllAndClose(conn, new TextEncoder().encode(data))
    return [150, (await raw.readReply()).code]
  } finally {
    closeQuietly(conn)
  }
}

const exists = async (path: string) => await Deno.lstat(path).then(() => true, () => false)
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)
const url = (tree: Tree, path: string) => `ftp://user:pass@127.0.0.1:${tree.server.port}/${path}`

/** A basic-ftp client logged in as "user"; closed after `f`. */
const withBasicFtp = async (tree: Tree, f: (client: Client) => Promise<void>): Promise<void> => {
  const client = new Client(10_000)
  try {
    await client.access({ host: "127.0.0.1", port: tree.server.port, user: "user", password: "pass" })
    await f(client)
  } finally {
    client.close()
  }
}

/** Assert that `promise` rejects with an FTP 550. */
const rejects550 = async (promise: Promise<unknown>, what: string) => {
  await assert.rejects(promise, (e: unknown) => e instanceof FTPError && e.code === 550, what)
}

const download = async (client: Client, path: string): Promise<string> => {
  const chunks: Uint8Array[] = []
  await client.downloadTo(new Writable({ write: (c, _e, cb) => (chunks.push(c), cb()) }), path)
  return text(new Uint8Array(await new Blob(chunks as BlobPart[]).arrayBuffer()))
}

// Every test up to the UnixFilesystem one runs against both jails.
for (const jail of ["descriptor", "path"] as const) {
  const test = (name: string, f: () => Promise<void>) => Deno.test(`${jail} jail: ${name}`, f)
  const jailed = (f: (tree: Tree) => Promise<void>) => withTree(f, false, jail)

  // --- .. and absolute paths -----------------------------------------------------------------------

  test("CWD ../.. stays at the home: PWD is / and NLST lists the home", () =>
    jailed((tree) =>
      withRaw(tree, async (raw) => {
        assert.equal((await raw.command("CWD ../..")).code, 250)
        assert.equal((await raw.command("PWD")).text, '"/" is the current directory.')
        const { data } = await receive(raw, "NLST")
        assert.ok(data.split("\r\n").includes("inner.txt"), data)
        assert.equal(data.split("\r\n").includes("outside"), false, data)
        await raw.command("CWD idir")
        assert.equal((await raw.command("CWD ../../../idir")).code, 250)
        assert.equal((await raw.command("PWD")).text, '"/idir" is the current directory.')
      })
    ))

  test("RETR with .. (../x, ../../etc/passwd, /../x, ../outside/secret.txt) replies 550 and sends nothing", () =>
    jailed((tree) =>
      withRaw(tree, async (raw) => {
        for (const path of ["../x", "../../etc/passwd", "/../x", "../outside/secret.txt", "idir/../../x"]) {
          assert.deepEqual(await receive(raw, `RETR ${path}`), { codes: [550], data: "" }, path)
        }
      })
    ))

  test("absolute real paths are taken inside the home: RETR, CWD, LIST, STOR, MKD reply 550", () =>
    jailed(async (tree) => {
      const before = await outsideState(tree)
      await withRaw(tree, async (raw) => {
        for (const path of ["/etc/passwd", `${tree.outside}/secret.txt`, `${tree.base}/x`]) {
          assert.deepEqual(await receive(raw, `RETR ${path}`), { codes: [550], data: "" }, path)
        }
        for (const command of ["CWD /etc", `CWD ${tree.outside}`, `MKD ${tree.outside}/made`, `STAT ${tree.outside}`]) {
          assert.equal((await raw.command(command)).code, 550, command)
        }
        assert.deepEqual((await receive(raw, `LIST ${tree.outside}`)).codes, [550])
        assert.deepEqual(await send(raw, `STOR ${tree.outside}/new.txt`), [550])
      })
      assert.equal(await outsideState(tree), before)
    }))

  test("RNTO with .. lands inside the home, never above it", () =>
    jailed((tree) =>
      withRaw(tree, async (raw) => {
        await raw.command("CWD idir")
        assert.equal((await raw.command("RNFR in.txt")).code, 350)
        assert.equal((await raw.command("RNTO ../../../escaped.txt")).code, 250)
        assert.equal(await Deno.readTextFile(`${tree.home}/escaped.txt`), "in")
        assert.equal(await exists(`${tree.base}/escaped.txt`), false)
      })
    ))

  test("curl cannot reach outside with .. or an absolute path", () =>
    jailed(async (tree) => {
      // curl exit codes: 78 = RETR (or SIZE) refused with 550, 9 = CWD refused.
      const cases: ReadonlyArray<readonly [string, string, number]> = [
        ["multicwd", "../x", 78],
        ["multicwd", "../../x", 78],
        ["multicwd", "%2F../x", 78],
        ["multicwd", "../outside/secret.txt", 9],
        ["multicwd", "%2Fetc/passwd", 9],
        ["nocwd", "../x", 78],
        ["nocwd", "../outside/secret.txt", 78],
        ["nocwd", "%2F../x", 78],
      ]
      for (const [method, path, code] of cases) {
        const out = await curl("--path-as-is", "--ftp-method", method, url(tree, path))
        assert.equal(out.code, code, `${method} ${path}: ${out.stderr}`)
        assert.equal(text(out.stdout), "", path)
      }
    }))

  // --- symlinks leading outside --------------------------------------------------------------------

  test("a symlink to a file outside: RETR, LIST, SIZE, MDTM, MLST, STAT reply 550 and reveal nothing", () =>
    jailed((tree) =>
      withRaw(tree, async (raw) => {
        assert.deepEqual(await receive(raw, "RETR flink"), { codes: [550], data: "" })
        assert.deepEqual(await receive(raw, "LIST flink"), { codes: [550], data: "" })
        for (const command of ["SIZE flink", "MDTM flink", "MLST flink", "STAT flink"]) {
          assert.equal((await raw.command(command)).code, 550, command)
        }
      })
    ))

  test("a symlink to a file outside: STOR, APPE, SITE CHMOD, MFMT, DELE, RNFR reply 550 and change nothing", () =>
    jailed(async (tree) => {
      const before = await outsideState(tree)
      await withRaw(tree, async (raw) => {
        assert.deepEqual(await send(raw, "STOR flink"), [550])
        assert.deepEqual(await send(raw, "APPE flink"), [550])
        for (const command of ["SITE CHMOD 777 flink", "MFMT 20000101000000 flink", "DELE flink", "RNFR flink"]) {
          assert.equal((await raw.command(command)).code, 550, command)
        }
      })
      assert.equal(await outsideState(tree), before)
      assert.ok(await exists(`${tree.home}/flink`))
    }))

  test("a symlink to a directory outside: CWD, LIST, NLST, MLSD, RETR and STAT through it reply 550", () =>
    jailed((tree) =>
      withRaw(tree, async (raw) => {
        assert.equal((await raw.command("CWD dlink")).code, 550)
        assert.equal((await raw.command("PWD")).text, '"/" is the current directory.')
        for (const command of ["LIST dlink", "NLST dlink", "MLSD dlink", "RETR dlink/secret.txt", "LIST dlink/"]) {
          assert.deepEqual(await receive(raw, command), { codes: [550], data: "" }, command)
        }
        for (const command of ["STAT dlink", "MLST dlink/secret.txt", "SIZE dlink/secret.txt"]) {
          assert.equal((await raw.command(command)).code, 550, command)
        }
      })
    ))

  test("a symlink to a directory outside: STOR, MKD, DELE, RNFR, RNTO through it reply 550, nothing written", () =>
    jailed(async (tree) => {
      const before = await outsideState(tree)
      await withRaw(tree, async (raw) => {
        assert.deepEqual(await send(raw, "STOR dlink/new.txt"), [550])
        assert.deepEqual(await send(raw, "STOR dlink/secret.txt"), [550])
        assert.deepEqual(await send(raw, "APPE dlink/secret.txt"), [550])
        for (const command of ["MKD dlink/sub", "DELE dlink/secret.txt", "RNFR dlink/secret.txt", "RMD dlink"]) {
          assert.equal((await raw.command(command)).code, 550, command)
        }
        assert.equal((await raw.command("RNFR inner.txt")).code, 350)
        assert.equal((await raw.command("RNTO dlink/stolen.txt")).code, 550)
        assert.equal((await raw.command("RNFR inner.txt")).code, 350)
        assert.equal((await raw.command("RNTO flink")).code, 550)
      })
      assert.equal(await outsideState(tree), before)
      assert.equal(await Deno.readTextFile(`${tree.home}/inner.txt`), "inner")
    }))

  test("curl cannot download, list or upload through symlinks leading outside", () =>
    jailed(async (tree) => {
      const before = await outsideState(tree)
      // curl exit codes: 78 = RETR refused with 550, 9 = CWD refused, 25 = STOR refused.
      const downloads: ReadonlyArray<readonly [string, string, number]> = [
        ["multicwd", "flink", 78],
        ["multicwd", "dlink/secret.txt", 9],
        ["multicwd", "dlink/", 9],
        ["nocwd", "dlink/secret.txt", 78],
      ]
      for (const [method, path, code] of downloads) {
        const out = await curl("--ftp-method", method, url(tree, path))
        assert.equal(out.code, code, `${method} ${path}: ${out.stderr}`)
        assert.equal(text(out.stdout), "", path)
      }
      const local = `${tree.home}/idir/in.txt`
      const uploads: ReadonlyArray<readonly [string, string, number]> = [
        ["multicwd", "flink", 25],
        ["multicwd", "dlink/new.txt", 9],
        ["nocwd", "dlink/new.txt", 25],
        ["nocwd", "dlink/secret.txt", 25],
      ]
      for (const [method, path, code] of uploads) {
        const out = await curl("--ftp-method", method, "-T", local, url(tree, path))
        assert.equal(out.code, code, `${method} -T ${path}: ${out.stderr}`)
      }
      assert.equal(await outsideState(tree), before)
    }))

  test("basic-ftp gets 550 for every operation through symlinks leading outside", () =>
    jailed(async (tree) => {
      const before = await outsideState(tree)
      await withBasicFtp(tree, async (client) => {
        await rejects550(download(client, "flink"), "download flink")
        await rejects550(download(client, "dlink/secret.txt"), "download dlink/secret.txt")
        await rejects550(client.cd("dlink"), "cd dlink")
        await rejects550(client.list("dlink"), "list dlink")
        await rejects550(client.uploadFrom(Readable.from([new TextEncoder().encode("x")]), "dlink/new.txt"), "upload")
        await rejects550(client.uploadFrom(Readable.from([new TextEncoder().encode("x")]), "flink"), "upload flink")
        await rejects550(client.rename("inner.txt", "dlink/stolen.txt"), "rename")
        await rejects550(client.remove("dlink/secret.txt"), "remove")
        assert.equal(await download(client, "inner.txt"), "inner")
      })
      assert.equal(await outsideState(tree), before)
    }))

  test("basic-ftp cannot reach outside with .. or absolute paths", () =>
    jailed(async (tree) => {
      await withBasicFtp(tree, async (client) => {
        await rejects550(download(client, "../x"), "../x")
        await rejects550(download(client, "/../x"), "/../x")
        await rejects550(download(client, `${tree.outside}/secret.txt`), "absolute")
        await client.cd("../..")
        assert.equal(await client.pwd(), "/")
      })
    }))

  // --- dangling symlinks, symlinks inside ----------------------------------------------------------

  test("a dangling symlink is refused with 550 and STOR through it creates nothing", () =>
    jailed(async (tree) => {
      await withRaw(tree, async (raw) => {
        for (const link of ["dangling", "dangling-in"]) {
          assert.deepEqual(await receive(raw, `RETR ${link}`), { codes: [550], data: "" }, link)
          assert.deepEqual(await send(raw, `STOR ${link}`), [550], link)
          assert.deepEqual(await send(raw, `APPE ${link}`), [550], link)
          assert.equal((await raw.command(`MKD ${link}`)).code, 550, link)
          assert.equal((await raw.command(`CWD ${link}`)).code, 550, link)
        }
      })
      assert.equal(await exists(`${tree.base}/nowhere.txt`), false)
      assert.equal(await exists(`${tree.home}/missing.txt`), false)
    }))

  test("symlinks that stay inside the home work for RETR, CWD, LIST and STOR", () =>
    jailed((tree) =>
      withRaw(tree, async (raw) => {
        assert.deepEqual(await receive(raw, "RETR ilink"), { codes: [150, 226], data: "inner" })
        assert.equal((await raw.command("SIZE ilink")).text, "5")
        assert.deepEqual(await receive(raw, "NLST idlink"), { codes: [150, 226], data: "in.txt\r\n" })
        assert.deepEqual(await send(raw, "STOR idlink/new.txt", "via link"), [150, 226])
        assert.equal(await Deno.readTextFile(`${tree.home}/idir/new.txt`), "via link")
        assert.equal((await raw.command("CWD idlink")).code, 250)
        assert.deepEqual(await receive(raw, "RETR in.txt"), { codes: [150, 226], data: "in" })
      })
    ))

  test("curl downloads through a symlink that stays inside the home", () =>
    jailed(async (tree) => {
      const out = await curl(url(tree, "ilink"))
      assert.equal(out.code, 0, out.stderr)
      assert.equal(text(out.stdout), "inner")
      assert.equal(text((await curl(url(tree, "idlink/in.txt"))).stdout), "in")
    }))
}

// --- UnixFilesystem ------------------------------------------------------------------------------

Deno.test("UnixFilesystem has no jail: symlinks leading outside are followed", () =>
  withTree(async (tree) => {
    await withRaw(tree, async (raw) => {
      assert.deepEqual(await receive(raw, "RETR flink"), { codes: [150, 226], data: "secret" })
      assert.equal((await raw.command("CWD dlink")).code, 250)
      assert.deepEqual(await receive(raw, "NLST"), { codes: [150, 226], data: "secret.txt\r\n" })
      assert.deepEqual(await send(raw, "STOR written.txt", "out"), [150, 226])
    })
    assert.equal(await Deno.readTextFile(`${tree.outside}/written.txt`), "out")
    assert.equal(text((await curl(url(tree, "dlink/secret.txt"))).stdout), "secret")
  }, true))
