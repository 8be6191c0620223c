/**
 * Wildcards in LIST and NLST (what `mget *.bin` sends), and the MLSx rules: `unix.owner` and
 * `unix.group` names, and symlinks reported the same way by MLST and MLSD. In-memory network.
 */
import assert from "node:assert/strict"
import { LocalFilesystem } from "../src/fs/local.ts"
import { MAX_GLOB_MATCHES } from "../src/session/commands/listing.ts"
import { groupName, userName } from "../src/sys/accounts.ts"
import { loggedIn, type RawClient, receive, startServer, type TestServer, type TestServerOptions } from "./helpers.ts"

const withServer = async (
  options: TestServerOptions,
  f: (server: TestServer, raw: RawClient) => Promise<void>,
): Promise<void> => {
  const server = await startServer({ ...options, inMemory: true })
  try {
    const raw = await loggedIn(server)
    try {
      await f(server, raw)
    } finally {
      raw.close()
    }
  } finally {
    await server.close()
  }
}

/** The names of a listing, one per line, sorted. */
const names = (data: string) => data.split("\r\n").filter((line) => line !== "").sort()

/** A tree: a.bin b.bin c.txt data1.bin data22.bin .hidden.bin sub/ sub/x.bin sub/deep/y.bin */
const tree = async (root: string) => {
  for (const name of ["a.bin", "b.bin", "c.txt", "data1.bin", "data22.bin", ".hidden.bin"]) {
    await Deno.writeTextFile(`${root}/${name}`, name)
  }
  await Deno.mkdir(`${root}/sub/deep`, { recursive: true })
  await Deno.writeTextFile(`${root}/sub/x.bin`, "x")
  await Deno.writeTextFile(`${root}/sub/deep/y.bin`, "y")
}

// --- wildcards -----------------------------------------------------------------------------------

Deno.test("NLST with *, ? and [...] in the last component lists the matching names of that directory only", () =>
  withServer({}, async (server, raw) => {
    await tree(server.root)
    const cases: Array<[string, string[]]> = [
      ["NLST *.bin", ["a.bin", "b.bin", "data1.bin", "data22.bin"]],
      ["NLST ?.bin", ["a.bin", "b.bin"]],
      ["NLST data[0-9].bin", ["data1.bin"]],
      ["NLST [!ab]*", ["c.txt", "data1.bin", "data22.bin", "sub"]],
      ["NLST .*.bin", [".hidden.bin"]],
      ["NLST *", ["a.bin", "b.bin", "c.txt", "data1.bin", "data22.bin", "sub"]],
      ["NLST *.none", []],
    ]
    for (const [command, expected] of cases) {
      const { codes, data } = await receive(raw, command)
      assert.deepEqual(codes, [150, 226], command)
      assert.deepEqual(names(data), expected, command)
    }
  }))

Deno.test("NLST sub/*.bin names each match as sub/<name>, which RETR takes as it is (mget); never recursive", () =>
  withServer({}, async (server, raw) => {
    await tree(server.root)
    assert.deepEqual(names((await receive(raw, "NLST sub/*.bin")).data), ["sub/x.bin"])
    assert.deepEqual(names((await receive(raw, "NLST /sub/*")).data), ["/sub/deep", "/sub/x.bin"])
    assert.deepEqual(await receive(raw, "RETR sub/x.bin"), { codes: [150, 226], data: "x" })
    assert.equal((await raw.command("CWD sub")).code, 250)
    assert.deepEqual(names((await receive(raw, "NLST ../*.txt")).data), ["../c.txt"])
  }))

Deno.test("LIST with a wildcard lists each matching entry's line, a directory as itself (ls -d)", () =>
  withServer({}, async (server, raw) => {
    await tree(server.root)
    const { codes, data } = await receive(raw, "LIST -la s*")
    assert.deepEqual(codes, [150, 226])
    const lines = data.split("\r\n").filter((line) => line !== "")
    assert.equal(lines.length, 1, data)
    assert.match(lines[0], /^d.* sub$/)
    const bins = (await receive(raw, "LIST sub/*.bin")).data.split("\r\n").filter((line) => line !== "")
    assert.equal(bins.length, 1)
    assert.match(bins[0], /^-rw.* 1 \w{3} [ \d]\d [\d:]{4,5} sub\/x\.bin$/)
  }))

Deno.test("a wildcard in a directory that does not exist, or in a file's place, replies 550", () =>
  withServer({}, async (server, raw) => {
    await tree(server.root)
    for (const command of ["NLST missing/*.bin", "LIST c.txt/*", "NLST ../../*"]) {
      const { codes } = await receive(raw, command)
      if (command === "NLST ../../*") assert.deepEqual(codes, [150, 226], "above the home is the home")
      else assert.deepEqual(codes, [550], command)
    }
  }))

Deno.test("a wildcard listing needs the list permission on its directory (550 without 'l')", () =>
  withServer({ users: (a, root) => a.addUser("user", "pass", root, { perm: "er" }) }, async (server, raw) => {
    await tree(server.root)
    assert.deepEqual(await receive(raw, "NLST *.bin"), { codes: [550], data: "" })
    assert.deepEqual(await receive(raw, "LIST sub/*"), { codes: [550], data: "" })
  }))

Deno.test("wildcards stay within the jail: a pattern behind a symlink leading outside replies 550", () =>
  withServer({}, async (server, raw) => {
    const outside = await Deno.makeTempDir({ prefix: "ftpd-outside-" })
    try {
      await Deno.writeTextFile(`${outside}/secret.bin`, "secret")
      await Deno.symlink(outside, `${server.root}/out`)
      assert.deepEqual(await receive(raw, "NLST out/*.bin"), { codes: [550], data: "" })
      assert.deepEqual(await receive(raw, "LIST out/*"), { codes: [550], data: "" })
    } finally {
      await Deno.remove(outside, { recursive: true })
    }
  }))

Deno.test(`more than ${MAX_GLOB_MATCHES} matches end the listing with 451, and the session goes on`, () =>
  withServer({}, async (server, raw) => {
    const count = MAX_GLOB_MATCHES + 5
    for (let i = 0; i < count; i++) Deno.writeTextFileSync(`${server.root}/f${i}`, "")
    const conn = await raw.passiveData()
    assert.equal((await raw.command("NLST f*")).code, 150)
    const buffer = new Uint8Array(1 << 16)
    while ((await conn.read(buffer)) !== null) { /* drain */ }
    conn.close()
    const end = await raw.readReply()
    assert.equal(end.code, 451)
    assert.match(end.text, /more than 10000 names match f\*: narrow the pattern\./)
    assert.equal((await receive(raw, "NLST f1")).data, "f1\r\n")
  }))

Deno.test("MLSD and MLST take wildcards literally (RFC 3659), and STAT refuses them", () =>
  withServer({}, async (server, raw) => {
    await tree(server.root)
    assert.deepEqual(await receive(raw, "MLSD *"), { codes: [550], data: "" })
    assert.equal((await raw.command("MLST *.bin")).code, 550)
    await Deno.writeTextFile(`${server.root}/*.bin`, "a file named so")
    assert.match((await raw.command("MLST *.bin")).lines[1], /type=file;size=15;.* \/\*\.bin$/)
    assert.equal((await raw.command("STAT *.bin")).code, 550)
  }))

// --- MLSx ----------------------------------------------------------------------------------------

Deno.test("OPTS MLST unix.owner;unix.group gives the names of the file's owner and group in MLSD and MLST", () =>
  withServer({}, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "a")
    const { uid, gid } = await Deno.stat(`${server.root}/a.txt`)
    const owner = userName(uid!)
    const group = groupName(gid!)
    assert.ok(owner !== null && group !== null, "the test runs as a user the system knows")
    assert.equal(
      (await raw.command("OPTS MLST type;unix.owner;unix.group;")).text,
      "MLST OPTS type;unix.owner;unix.group;",
    )
    assert.equal(
      (await raw.command("MLST a.txt")).lines[1],
      ` type=file;unix.owner=${owner};unix.group=${group}; /a.txt`,
    )
    assert.equal((await receive(raw, "MLSD")).data, `type=file;unix.owner=${owner};unix.group=${group}; a.txt\r\n`)
    const feat = (await raw.command("FEAT")).lines
    assert.ok(feat.includes(" MLST type*;perm;size;modify;unique;unix.mode;unix.uid;unix.gid;unix.owner*;unix.group*;"))
  }))

Deno.test("a filesystem without Unix facts offers no unix.owner or unix.group", () =>
  withServer(
    { filesystem: { ...LocalFilesystem.make(), capabilities: { unixFacts: false } } },
    async (server, raw) => {
      await Deno.writeTextFile(`${server.root}/a.txt`, "a")
      assert.equal((await raw.command("OPTS MLST type;unix.owner;unix.group;")).text, "MLST OPTS type;")
      assert.equal((await raw.command("MLST a.txt")).lines[1], " type=file; /a.txt")
    },
  ))

Deno.test("MLST and MLSD both report a symlink inside the home as type=OS.unix=symlink, with the link's own size", () =>
  withServer({}, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/target.txt`, "0123456789")
    await Deno.symlink("target.txt", `${server.root}/link`)
    await Deno.mkdir(`${server.root}/dir`)
    await Deno.symlink("dir", `${server.root}/dlink`)
    await raw.command("OPTS MLST type;size;")
    const mlsd = names((await receive(raw, "MLSD")).data)
    assert.deepEqual(
      mlsd,
      [
        "type=OS.unix=symlink;size=10; link",
        "type=OS.unix=symlink;size=3; dlink",
        "type=dir; dir",
        "type=file;size=10; target.txt",
      ].sort(),
    )
    assert.equal((await raw.command("MLST link")).lines[1], " type=OS.unix=symlink;size=10; /link")
    assert.equal((await raw.command("MLST dlink")).lines[1], " type=OS.unix=symlink;size=3; /dlink")
    // What the link leads to is one CWD or RETR away, and both follow it.
    assert.deepEqual(await receive(raw, "RETR link"), { codes: [150, 226], data: "0123456789" })
    assert.equal((await raw.command("CWD dlink")).code, 250)
    assert.equal((await raw.command("MLST /dir")).lines[1], " type=dir; /dir")
  }))

Deno.test("ABOR during a wildcard listing replies 426 then 226, and the session goes on", () =>
  withServer({ writeLimit: 64 * 1024 }, async (server, raw) => {
    for (let i = 0; i < 5000; i++) Deno.writeTextFileSync(`${server.root}/file-with-a-long-name-${i}.bin`, "")
    const conn = await raw.passiveData()
    assert.equal((await raw.command("LIST *.bin")).code, 150)
    // Throttled to 64 KiB/s, the listing (about 400 KiB) takes seconds: ABOR comes in the middle.
    await new Promise((resolve) => setTimeout(resolve, 200))
    await raw.send("ABOR")
    assert.deepEqual([(await raw.readReply()).code, (await raw.readReply()).code], [426, 226])
    conn.close()
    assert.deepEqual(names((await receive(raw, "NLST file-with-a-long-name-1.bin")).data), [
      "file-with-a-long-name-1.bin",
    ])
  }))
