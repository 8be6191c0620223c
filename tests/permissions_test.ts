/**
 * Permission letters (`e l r a d f m w M T`, pyftpdlib's) seen through the server: a user without
 * the letter gets 550 and the filesystem is untouched; a user with only that letter succeeds.
 * Then `overridePerm` and the read-only anonymous user. The server runs on an in-memory network:
 * no socket at all; every test runs on the local disk and again on a `MemoryFilesystem` (no disk
 * either).
 */
import assert from "node:assert/strict"
import {
  closeQuietly,
  RawClient,
  receive,
  type Reply,
  startServer,
  type TestServerOptions,
  writeAllAndClose,
} from "./helpers.ts"
import { type TestTree, TREES } from "./trees.ts"

const ALL = "elradfmwMT"
const OLD = new Date(Date.UTC(2020, 0, 1, 0, 0, 0))

/** The tree every test starts with: `a.txt` ("hello", 0644, 2020), an empty `dir/`, `full/b.txt`. */
const seed = async (tree: TestTree, root: string) => {
  await tree.writeFile(root, "a.txt", "hello")
  await tree.mkdir(root, "dir")
  await tree.mkdir(root, "full")
  await tree.writeFile(root, "full/b.txt", "b")
  for (const path of ["a.txt", "full/b.txt"]) {
    await tree.chmod(root, path, 0o644)
    await tree.utime(root, path, OLD)
  }
}

/** A server with the seeded tree, `user` logged in with `perm`; closed after `f`. */
const asUser = async (
  tree: TestTree,
  perm: string,
  f: (raw: RawClient, root: string) => Promise<void>,
  options: TestServerOptions = {},
): Promise<void> => {
  const server = await startServer({
    users: (a, root) => a.addUser("u", "pw", root, { perm }).addAnonymous(root),
    ...tree.options,
    ...options,
    inMemory: true,
  })
  let raw: RawClient | undefined
  try {
    await seed(tree, server.root)
    raw = await RawClient.connectTo(server)
    await raw.login("u", "pw")
    await raw.command("TYPE I")
    await f(raw, server.root)
  } finally {
    raw?.close()
    await server.close()
  }
}

/** A command that sends data (STOR, APPE, STOU) over EPSV: its replies. */
const send = async (raw: RawClient, command: string, data: string): Promise<Reply[]> => {
  const conn = await raw.passiveData()
  try {
    const first = await raw.command(command)
    if (first.code !== 150) return [first]
    await writeAllAndClose(conn, new TextEncoder().encode(data))
    return [first, await raw.readReply()]
  } finally {
    closeQuietly(conn)
  }
}

const codes = (replies: ReadonlyArray<Reply>) => replies.map((r) => r.code)

interface LetterCase {
  readonly letter: string
  readonly commands: string
  /** Every refused command must reply 550; the tree is compared before and after. */
  readonly denied: (raw: RawClient, root: string, tree: TestTree) => Promise<void>
  readonly allowed: (raw: RawClient, root: string, tree: TestTree) => Promise<void>
}

const cases: ReadonlyArray<LetterCase> = [
  {
    letter: "e",
    commands: "CWD and XCWD",
    denied: async (raw) => {
      assert.equal((await raw.command("CWD dir")).code, 550)
      assert.equal((await raw.command("XCWD dir")).code, 550)
      assert.equal((await raw.command("PWD")).text, '"/" is the current directory.')
    },
    allowed: async (raw) => {
      assert.equal((await raw.command("CWD dir")).code, 250)
      assert.equal((await raw.command("PWD")).text, '"/dir" is the current directory.')
    },
  },
  {
    letter: "l",
    commands: "LIST, NLST, MLSD, MLST, STAT, SIZE and MDTM",
    denied: async (raw) => {
      for (const command of ["LIST", "NLST full", "MLSD", "LIST a.txt"]) {
        assert.deepEqual(await receive(raw, command), { codes: [550], data: "" }, command)
      }
      for (const command of ["MLST a.txt", "STAT /", "STAT full", "SIZE a.txt", "MDTM a.txt"]) {
        assert.equal((await raw.command(command)).code, 550, command)
      }
    },
    allowed: async (raw) => {
      const list = await receive(raw, "LIST")
      assert.deepEqual(list.codes, [150, 226])
      assert.match(list.data, / a\.txt\r\n/)
      assert.deepEqual(await receive(raw, "NLST full"), { codes: [150, 226], data: "b.txt\r\n" })
      assert.deepEqual((await receive(raw, "MLSD")).codes, [150, 226])
      assert.equal((await raw.command("MLST a.txt")).code, 250)
      assert.equal((await raw.command("STAT /")).code, 213)
      assert.equal((await raw.command("SIZE a.txt")).text, "5")
      assert.equal((await raw.command("MDTM a.txt")).text, "20200101000000")
    },
  },
  {
    letter: "r",
    commands: "RETR",
    denied: async (raw) => {
      assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [550], data: "" })
    },
    allowed: async (raw) => {
      assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [150, 226], data: "hello" })
    },
  },
  {
    letter: "a",
    commands: "APPE",
    denied: async (raw) => {
      assert.deepEqual(codes(await send(raw, "APPE a.txt", " world")), [550])
      assert.deepEqual(codes(await send(raw, "APPE new.txt", "x")), [550])
    },
    allowed: async (raw, root, tree) => {
      assert.deepEqual(codes(await send(raw, "APPE a.txt", " world")), [150, 226])
      assert.equal(await tree.readText(root, "a.txt"), "hello world")
    },
  },
  {
    letter: "d",
    commands: "DELE, RMD and XRMD",
    denied: async (raw) => {
      assert.equal((await raw.command("DELE a.txt")).code, 550)
      assert.equal((await raw.command("RMD dir")).code, 550)
      assert.equal((await raw.command("XRMD dir")).code, 550)
    },
    allowed: async (raw, root, tree) => {
      assert.equal((await raw.command("DELE a.txt")).code, 250)
      assert.equal((await raw.command("RMD dir")).code, 250)
      assert.equal(await tree.exists(root, "a.txt"), false)
      assert.equal(await tree.exists(root, "dir"), false)
    },
  },
  {
    letter: "f",
    commands: "RNFR/RNTO",
    denied: async (raw) => {
      assert.equal((await raw.command("RNFR a.txt")).code, 550)
      assert.equal((await raw.command("RNTO b.txt")).code, 503)
      assert.equal((await raw.command("RNFR dir")).code, 550)
    },
    allowed: async (raw, root, tree) => {
      assert.equal((await raw.command("RNFR a.txt")).code, 350)
      assert.equal((await raw.command("RNTO dir/moved.txt")).code, 250)
      assert.equal(await tree.readText(root, "dir/moved.txt"), "hello")
      assert.equal(await tree.exists(root, "a.txt"), false)
    },
  },
  {
    letter: "m",
    commands: "MKD and XMKD",
    denied: async (raw) => {
      assert.equal((await raw.command("MKD new")).code, 550)
      assert.equal((await raw.command("XMKD dir/new")).code, 550)
    },
    allowed: async (raw, root, tree) => {
      assert.equal((await raw.command("MKD new")).code, 257)
      assert.equal((await raw.command("XMKD dir/new")).code, 257)
      assert.ok(await tree.isDirectory(root, "new"))
      assert.ok(await tree.isDirectory(root, "dir/new"))
    },
  },
  {
    letter: "w",
    commands: "STOR and STOU",
    denied: async (raw) => {
      assert.deepEqual(codes(await send(raw, "STOR new.txt", "x")), [550])
      assert.deepEqual(codes(await send(raw, "STOR a.txt", "overwritten")), [550])
      assert.deepEqual(codes(await send(raw, "STOU", "x")), [550])
    },
    allowed: async (raw, root, tree) => {
      assert.deepEqual(codes(await send(raw, "STOR new.txt", "data")), [150, 226])
      assert.deepEqual(codes(await send(raw, "STOR a.txt", "overwritten")), [150, 226])
      assert.equal(await tree.readText(root, "new.txt"), "data")
      assert.equal(await tree.readText(root, "a.txt"), "overwritten")
    },
  },
  {
    letter: "M",
    commands: "SITE CHMOD",
    denied: async (raw) => {
      assert.equal((await raw.command("SITE CHMOD 600 a.txt")).code, 550)
      assert.equal((await raw.command("SITE CHMOD 700 dir")).code, 550)
    },
    allowed: async (raw, root, tree) => {
      assert.equal((await raw.command("SITE CHMOD 600 a.txt")).code, 200)
      assert.equal((await tree.mode(root, "a.txt")) & 0o777, 0o600)
    },
  },
  {
    letter: "T",
    commands: "MFMT",
    denied: async (raw) => {
      assert.equal((await raw.command("MFMT 20230405060708 a.txt")).code, 550)
    },
    allowed: async (raw, root, tree) => {
      assert.equal((await raw.command("MFMT 20230405060708 a.txt")).code, 213)
      assert.equal((await tree.mtime(root, "a.txt"))?.toISOString(), "2023-04-05T06:07:08.000Z")
    },
  },
]

for (const { name, make } of TREES) {
  for (const c of cases) {
    Deno.test(`${name}: ${c.commands} without permission "${c.letter}" reply 550 and change nothing`, () => {
      const tree = make()
      return asUser(tree, ALL.replace(c.letter, ""), async (raw, root) => {
        const before = await tree.snapshot(root)
        await c.denied(raw, root, tree)
        assert.deepEqual(await tree.snapshot(root), before)
      })
    })

    Deno.test(`${name}: ${c.commands} with only permission "${c.letter}" succeed`, () => {
      const tree = make()
      return asUser(tree, c.letter, (raw, root) => c.allowed(raw, root, tree))
    })
  }

  Deno.test(`${name}: the anonymous read-only user cannot STOR, APPE, MKD, DELE, RNFR or SITE CHMOD: 550, nothing written`, async () => {
    const tree = make()
    const server = await startServer({ ...tree.options, inMemory: true })
    const raw = await RawClient.connectTo(server)
    try {
      await seed(tree, server.root)
      await raw.login("anonymous", "guest@example.com")
      const before = await tree.snapshot(server.root)
      assert.deepEqual(codes(await send(raw, "STOR up.txt", "x")), [550])
      assert.deepEqual(codes(await send(raw, "APPE a.txt", "x")), [550])
      for (const command of ["MKD new", "DELE a.txt", "RMD dir", "RNFR a.txt", "SITE CHMOD 777 a.txt"]) {
        assert.equal((await raw.command(command)).code, 550, command)
      }
      assert.equal((await raw.command("MFMT 20230405060708 a.txt")).code, 550)
      assert.deepEqual(await tree.snapshot(server.root), before)
      assert.deepEqual(await receive(raw, "RETR a.txt"), { codes: [150, 226], data: "hello" })
    } finally {
      raw.close()
      await server.close()
    }
  })

  // --- overridePerm ------------------------------------------------------------------------------

  /** A root with `dirs` made before the server starts (overrides name existing directories). */
  const withRoot = async (tree: TestTree, dirs: ReadonlyArray<string>, f: (root: string) => Promise<void>) => {
    const root = await tree.makeRoot()
    try {
      for (const dir of dirs) await tree.mkdir(root, dir)
      await f(root)
    } finally {
      await tree.removeRoot(root)
    }
  }

  /** "u" has `elr` on the root and `elrw` on `/upload`, recursively or not. */
  const withUpload = (recursive: boolean, f: (raw: RawClient, root: string, tree: TestTree) => Promise<void>) => {
    const tree = make()
    return withRoot(tree, ["upload/sub"], (root) =>
      asUser(tree, "elr", (raw, root) => f(raw, root, tree), {
        root,
        users: (a) =>
          a.addUser("u", "pw", root, { perm: "elr" }).overridePerm("u", tree.real(root, "upload"), "elrw", recursive),
      }))
  }

  Deno.test(`${name}: a non-recursive overridePerm allows STOR in that directory only`, () =>
    withUpload(false, async (raw, root, tree) => {
      assert.deepEqual(codes(await send(raw, "STOR upload/in.txt", "in")), [150, 226])
      assert.equal(await tree.readText(root, "upload/in.txt"), "in")
      assert.deepEqual(codes(await send(raw, "STOR upload/sub/deep.txt", "x")), [550])
      assert.equal(await tree.exists(root, "upload/sub/deep.txt"), false)
      assert.deepEqual(codes(await send(raw, "STOR top.txt", "x")), [550])
      assert.equal(await tree.exists(root, "top.txt"), false)
    }))

  Deno.test(`${name}: a recursive overridePerm allows STOR in every subdirectory too, still not above`, () =>
    withUpload(true, async (raw, root, tree) => {
      assert.deepEqual(codes(await send(raw, "STOR upload/sub/deep.txt", "deep")), [150, 226])
      assert.equal(await tree.readText(root, "upload/sub/deep.txt"), "deep")
      assert.deepEqual(codes(await send(raw, "STOR top.txt", "x")), [550])
      assert.equal(await tree.exists(root, "top.txt"), false)
    }))

  Deno.test(`${name}: overridePerm shows in MLSx perm facts of entries it covers`, () =>
    withUpload(false, async (raw, root, tree) => {
      await tree.writeFile(root, "upload/f.txt", "x")
      await tree.writeFile(root, "f.txt", "x")
      assert.match((await raw.command("MLST upload/f.txt")).lines[1], /;perm=rw;/)
      assert.match((await raw.command("MLST f.txt")).lines[1], /;perm=r;/)
    }))

  Deno.test(`${name}: an overridePerm can take permissions away below a directory`, () => {
    const tree = make()
    return withRoot(tree, ["ro/deeper"], (root) =>
      asUser(tree, ALL, async (raw, root) => {
        await tree.writeFile(root, "ro/keep.txt", "k")
        await tree.writeFile(root, "ro/deeper/keep.txt", "k")
        assert.equal((await raw.command("DELE ro/keep.txt")).code, 550)
        assert.equal((await raw.command("DELE ro/deeper/keep.txt")).code, 550)
        assert.equal((await raw.command("MKD ro/new")).code, 550)
        assert.ok(await tree.exists(root, "ro/keep.txt"))
        assert.ok(await tree.exists(root, "ro/deeper/keep.txt"))
        assert.equal(await tree.exists(root, "ro/new"), false)
        assert.equal((await raw.command("DELE a.txt")).code, 250)
      }, {
        root,
        users: (a) => a.addUser("u", "pw", root, { perm: ALL }).overridePerm("u", tree.real(root, "ro"), "elr", true),
      }))
  })

  Deno.test(`${name}: RNTO into a directory where the user lacks f replies 550 and the file stays`, () => {
    const tree = make()
    return withRoot(tree, ["locked"], (root) =>
      asUser(tree, ALL, async (raw, root) => {
        assert.equal((await raw.command("RNFR a.txt")).code, 350)
        assert.equal((await raw.command("RNTO locked/a.txt")).code, 550)
        assert.ok(await tree.exists(root, "a.txt"))
        assert.equal(await tree.exists(root, "locked/a.txt"), false)
      }, {
        root,
        users: (a) =>
          a.addUser("u", "pw", root, { perm: ALL }).overridePerm("u", tree.real(root, "locked"), "elr", true),
      }))
  })
}
