/**
 * `MountFilesystem`: a base filesystem with others mounted at virtual paths, seen through FTP:
 * mount points appear in listings, each path is served by its own filesystem, a read-only mount
 * refuses changes, and renames across mounts are refused with 553.
 */
import assert from "node:assert/strict"
import { LocalFilesystem } from "../src/fs/local.ts"
import { makeMemoryFilesystem } from "../src/fs/memory.ts"
import { makeMountFilesystem } from "../src/fs/mounts.ts"
import {
  closeQuietly,
  loggedIn,
  type RawClient,
  receive,
  type Reply,
  startServer,
  writeAllAndClose,
} from "./helpers.ts"

const encoder = new TextEncoder()

const store = async (raw: RawClient, command: string, text: string): Promise<Reply[]> => {
  const conn = await raw.passiveData()
  try {
    const first = await raw.command(command)
    if (first.code !== 150) return [first]
    await writeAllAndClose(conn, encoder.encode(text))
    return [first, await raw.readReply()]
  } finally {
    closeQuietly(conn)
  }
}

const codes = (replies: ReadonlyArray<Reply>) => replies.map((r) => r.code)
const names = (listing: string) => listing.split("\r\n").filter((l) => l !== "").sort()

/** A memory base, `/pub` a read-only local directory, `/deep/scratch` another memory tree. */
const withMounts = async (f: (raw: RawClient, pub: string) => Promise<void>) => {
  const pub = await Deno.realPath(await Deno.makeTempDir({ prefix: "ftpd-pub-" }))
  await Deno.writeTextFile(`${pub}/readme.txt`, "read me")
  const fs = makeMountFilesystem({
    base: makeMemoryFilesystem(),
    mounts: [
      { at: "/pub", filesystem: LocalFilesystem.make(), root: pub, readOnly: true },
      { at: "/deep/scratch/", filesystem: makeMemoryFilesystem(), root: "memory:/" },
    ],
  })
  const server = await startServer({ filesystem: fs, root: "memory:/", localHomes: false, inMemory: true })
  const raw = await loggedIn(server)
  try {
    await f(raw, pub)
  } finally {
    raw.close()
    await server.close()
    await Deno.remove(pub, { recursive: true })
  }
}

Deno.test("mount points show in listings, even where the base has no such directory, and serve their own files", () =>
  withMounts(async (raw) => {
    assert.deepEqual(codes(await store(raw, "STOR top.txt", "top")), [150, 226])
    assert.deepEqual(names((await receive(raw, "NLST")).data), ["deep", "pub", "top.txt"])
    assert.deepEqual(names((await receive(raw, "NLST /deep")).data), ["scratch"])
    assert.match((await receive(raw, "MLSD /")).data, /type=dir;.* pub\r\n/)
    assert.deepEqual(await receive(raw, "RETR /pub/readme.txt"), { codes: [150, 226], data: "read me" })
    assert.equal((await raw.command("CWD /deep/scratch")).code, 250)
    assert.deepEqual(codes(await store(raw, "STOR s.txt", "scratch")), [150, 226])
    assert.deepEqual(await receive(raw, "RETR /deep/scratch/s.txt"), { codes: [150, 226], data: "scratch" })
    assert.equal((await raw.command("SIZE /s.txt")).code, 550, "not in the base")
  }))

Deno.test("a read-only mount refuses STOR, MKD, DELE, RNFR/RNTO and SITE CHMOD with 550, and nothing changes", () =>
  withMounts(async (raw, pub) => {
    assert.deepEqual(codes(await store(raw, "STOR /pub/new.txt", "x")), [550])
    assert.deepEqual(codes(await store(raw, "STOR /pub/readme.txt", "x")), [550])
    for (const command of ["MKD /pub/dir", "DELE /pub/readme.txt", "SITE CHMOD 600 /pub/readme.txt"]) {
      assert.equal((await raw.command(command)).code, 550, command)
    }
    assert.equal((await raw.command("RNFR /pub/readme.txt")).code, 350)
    assert.equal((await raw.command("RNTO /pub/moved.txt")).code, 550)
    assert.deepEqual([...Deno.readDirSync(pub)].map((e) => e.name), ["readme.txt"])
    assert.equal(await Deno.readTextFile(`${pub}/readme.txt`), "read me")
  }))

Deno.test("RNFR/RNTO across mounts replies 553 and moves nothing; mount points can't be removed or renamed", () =>
  withMounts(async (raw) => {
    await store(raw, "STOR a.txt", "a")
    assert.equal((await raw.command("RNFR a.txt")).code, 350)
    const across = await raw.command("RNTO /deep/scratch/a.txt")
    assert.equal(across.code, 553)
    assert.match(across.text, /across mounts/)
    assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [150, 226], data: "a" })
    assert.equal((await raw.command("SIZE /deep/scratch/a.txt")).code, 550)
    assert.equal((await raw.command("RMD /deep/scratch")).code, 550)
    assert.equal((await raw.command("MKD /pub")).code, 550)
    assert.equal((await raw.command("RNFR /deep/scratch")).code, 350)
    assert.equal((await raw.command("RNTO /elsewhere")).code, 550)
    assert.equal((await raw.command("RNFR a.txt")).code, 350)
    assert.equal((await raw.command("RNTO b.txt")).code, 250, "within one filesystem")
  }))
