/**
 * The S3 filesystem against a real S3-compatible server (`npm:s3rver`, started here, its data in a
 * temporary folder), driven through FTP sessions, with `rclone`'s S3 backend as an independent
 * client checking what landed in the bucket. Sessions run on the in-memory network.
 */
import assert from "node:assert/strict"
import type { FilesystemShape } from "../src/fs/filesystem.ts"
import {
  closeQuietly,
  loggedIn,
  randomBytes,
  type RawClient,
  receive,
  type Reply,
  sha256,
  startServer,
  type TestServer,
  writeAllAndClose,
} from "./helpers.ts"
import { hasNode, hasRclone, objects, pendingUploads, rclone, type S3rver, startS3rver } from "./s3/s3rver.ts"

const MiB = 1 << 20
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** An FTP server on `fs`, users' homes at `home`: "user" may do everything, anonymous may read. */
const serve = (fs: FilesystemShape, home: string, options: Parameters<typeof startServer>[0] = {}) =>
  startServer({ filesystem: fs, root: home, localHomes: false, inMemory: true, ...options })

/** STOR `data` as `name`: the replies (150 and the final one, or the refusal). */
const store = async (raw: RawClient, name: string, data: Uint8Array, command = "STOR"): Promise<Reply[]> => {
  const conn = await raw.passiveData()
  try {
    const first = await raw.command(`${command} ${name}`)
    if (first.code !== 150) return [first]
    await writeAllAndClose(conn, data)
    return [first, await raw.readReply()]
  } finally {
    closeQuietly(conn)
  }
}

/** RETR `name`: the replies and the bytes. */
const retrieve = async (raw: RawClient, name: string): Promise<{ codes: number[]; data: Uint8Array }> => {
  const conn = await raw.passiveData()
  try {
    const first = await raw.command(`RETR ${name}`)
    if (first.code !== 150) return { codes: [first.code], data: new Uint8Array(0) }
    const chunks: Uint8Array[] = []
    const buffer = new Uint8Array(1 << 20)
    for (;;) {
      const n = await conn.read(buffer)
      if (n === null) break
      chunks.push(buffer.slice(0, n))
    }
    const data = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0))
    let offset = 0
    for (const chunk of chunks) {
      data.set(chunk, offset)
      offset += chunk.length
    }
    return { codes: [first.code, (await raw.readReply()).code], data }
  } finally {
    closeQuietly(conn)
  }
}

const codes = (replies: ReadonlyArray<Reply>) => replies.map((r) => r.code)

/** What rclone finds under `prefix/` in the bucket: key (without the prefix) → size. */
const listed = async (s3: S3rver, prefix: string): Promise<Record<string, number>> =>
  Object.fromEntries(
    Object.entries(await objects(s3)).filter(([key]) => key.startsWith(`${prefix}/`)).map((
      [key, size],
    ) => [key.slice(prefix.length + 1), size]),
  )

/** The bytes of `key` as rclone reads them. */
const fetched = async (s3: S3rver, key: string) => await rclone(s3, "cat", `s3rver:${s3.bucket}/${key}`)

const available = async () => (await hasNode()) && (await hasRclone())

let prefixes = 0
/** A fresh prefix of the shared bucket, and a server over it logged in as "user". */
const session = async (
  s3: S3rver,
  f: (raw: RawClient, prefix: string, server: TestServer) => Promise<void>,
  options: Parameters<S3rver["filesystem"]>[0] = {},
  serverOptions: Parameters<typeof startServer>[0] = {},
) => {
  const prefix = `t${++prefixes}`
  const server = await serve(s3.filesystem({ prefix, ...options }), `s3://${s3.bucket}/${prefix}`, serverOptions)
  const raw = await loggedIn(server)
  try {
    await f(raw, prefix, server)
  } finally {
    raw.close()
    await server.close()
  }
}

Deno.test({
  name: "S3Filesystem against s3rver",
  ignore: !(await available()),
  fn: async (t) => {
    const s3 = await startS3rver()
    try {
      await t.step(
        "STOR then RETR are byte-exact for 0 B, 1 B, 5 MiB + 1, 12 MiB + 1 and 100 MiB (one PUT and multipart), checked by rclone",
        () =>
          session(s3, async (raw, prefix) => {
            const files: Record<string, Uint8Array> = {
              "empty.bin": new Uint8Array(0),
              "one.bin": randomBytes(1),
              "five.bin": randomBytes(5 * MiB + 1),
              "twelve.bin": randomBytes(12 * MiB + 1),
              "hundred.bin": randomBytes(100 * MiB),
            }
            for (const [name, data] of Object.entries(files)) {
              assert.deepEqual(codes(await store(raw, name, data)), [150, 226], name)
            }
            assert.deepEqual(await listed(s3, prefix), {
              "empty.bin": 0,
              "one.bin": 1,
              "five.bin": 5 * MiB + 1,
              "twelve.bin": 12 * MiB + 1,
              "hundred.bin": 100 * MiB,
            })
            for (const [name, data] of Object.entries(files)) {
              assert.equal(await sha256(await fetched(s3, `${prefix}/${name}`)), await sha256(data), `rclone: ${name}`)
              const back = await retrieve(raw, name)
              assert.deepEqual(back.codes, [150, 226])
              assert.equal(await sha256(back.data), await sha256(data), `RETR ${name}`)
            }
            assert.deepEqual((await pendingUploads(s3)).filter((u) => u.key.startsWith(`${prefix}/`)), [])
          }, { partSize: 5 * MiB }),
      )

      await t.step(
        "REST then RETR streams from the offset (a ranged GET); REST at the end sends nothing, past it 554",
        () =>
          session(s3, async (raw) => {
            const data = randomBytes(3 * MiB)
            await store(raw, "r.bin", data)
            assert.equal((await raw.command("REST 1048577")).code, 350)
            const back = await retrieve(raw, "r.bin")
            assert.deepEqual(back.codes, [150, 226])
            assert.equal(await sha256(back.data), await sha256(data.subarray(1048577)))
            assert.equal((await raw.command(`REST ${data.length}`)).code, 350)
            assert.deepEqual((await retrieve(raw, "r.bin")).data.length, 0)
            assert.equal((await raw.command(`REST ${data.length + 1}`)).code, 350)
            assert.deepEqual((await retrieve(raw, "r.bin")).codes, [554])
          }),
      )

      await t.step(
        "MKD makes a marker, LIST/NLST/MLSD show prefixes and files across ListObjectsV2 pages, RMD only when empty",
        () =>
          session(s3, async (raw, prefix) => {
            assert.equal((await raw.command("MKD docs")).code, 257)
            assert.equal((await raw.command("MKD docs")).code, 550)
            assert.equal((await raw.command("MKD no/such")).code, 550)
            // Nothing is in it yet: only the marker object makes it a directory.
            assert.equal((await raw.command("CWD docs")).code, 250)
            assert.equal((await raw.command("CWD /")).code, 250)
            assert.deepEqual(
              JSON.parse(decoder.decode(await rclone(s3, "lsjson", `s3rver:${s3.bucket}/${prefix}`))).map((
                e: { Path: string; IsDir: boolean },
              ) => [e.Path, e.IsDir]),
              [["docs", true]],
            )
            for (const name of ["a.txt", "b.txt", "c.txt", "d.txt"]) {
              await store(raw, `docs/${name}`, encoder.encode(name))
            }
            await rclone(s3, "rcat", `s3rver:${s3.bucket}/${prefix}/docs/sub/deep.txt`).catch(() => undefined)
            await store(raw, "top.txt", encoder.encode("top"))
            assert.deepEqual(
              (await receive(raw, "NLST docs")).data.split("\r\n").filter((l) => l !== "").sort(),
              ["a.txt", "b.txt", "c.txt", "d.txt"],
            )
            const mlsd = await receive(raw, "MLSD")
            assert.deepEqual(mlsd.codes, [150, 226])
            assert.match(mlsd.data, /type=dir;.* docs\r\n/)
            assert.match(mlsd.data, /type=file;size=3;.* top\.txt\r\n/)
            assert.doesNotMatch(mlsd.data, /unix\./)
            assert.match((await receive(raw, "LIST")).data, /^d.* docs\r\n/m)
            assert.equal((await raw.command("CWD docs")).code, 250)
            assert.equal((await raw.command("CWD /top.txt")).code, 550)
            assert.equal((await raw.command("RMD /docs")).code, 550, "not empty")
            for (const name of ["a.txt", "b.txt", "c.txt", "d.txt"]) {
              assert.equal((await raw.command(`DELE ${name}`)).code, 250)
            }
            assert.equal((await raw.command("CWD /")).code, 250)
            assert.equal((await raw.command("RMD docs")).code, 250)
            assert.equal((await raw.command("CWD docs")).code, 550)
            assert.deepEqual(await listed(s3, prefix), { "top.txt": 3 })
          }, { listPageSize: 2 }),
      )

      await t.step("SIZE and MDTM come from HEAD; DELE of a missing file is 550", () =>
        session(s3, async (raw) => {
          await store(raw, "s.bin", randomBytes(1234))
          assert.equal((await raw.command("SIZE s.bin")).text, "1234")
          const mdtm = await raw.command("MDTM s.bin")
          assert.equal(mdtm.code, 213)
          assert.ok(
            Math.abs(
              Date.now() - Date.UTC(
                Number(mdtm.text.slice(0, 4)),
                Number(mdtm.text.slice(4, 6)) - 1,
                Number(mdtm.text.slice(6, 8)),
                Number(mdtm.text.slice(8, 10)),
                Number(mdtm.text.slice(10, 12)),
                Number(mdtm.text.slice(12, 14)),
              ),
            ) < 120_000,
          )
          assert.equal((await raw.command("SIZE none.bin")).code, 550)
          assert.equal((await raw.command("DELE none.bin")).code, 550)
        }))

      await t.step(
        "RNFR/RNTO of a file copies and deletes; of a small directory moves each object; of a bigger one 550",
        () =>
          session(s3, async (raw, prefix) => {
            await store(raw, "a.txt", encoder.encode("a"))
            assert.equal((await raw.command("MKD dir")).code, 257)
            await store(raw, "dir/x.txt", encoder.encode("x"))
            await store(raw, "dir/y.txt", encoder.encode("yy"))
            assert.equal((await raw.command("RNFR a.txt")).code, 350)
            assert.equal((await raw.command("RNTO dir/a.txt")).code, 250)
            assert.equal(decoder.decode(await fetched(s3, `${prefix}/dir/a.txt`)), "a")
            assert.equal((await raw.command("RNFR dir")).code, 350)
            assert.equal((await raw.command("RNTO moved")).code, 550, "3 objects and a marker, over the limit of 3")
            assert.deepEqual(await listed(s3, prefix), { "dir/a.txt": 1, "dir/x.txt": 1, "dir/y.txt": 2 })
            assert.equal((await raw.command("DELE dir/a.txt")).code, 250)
            assert.equal((await raw.command("RNFR dir")).code, 350)
            assert.equal((await raw.command("RNTO moved")).code, 250)
            assert.deepEqual(await listed(s3, prefix), { "moved/x.txt": 1, "moved/y.txt": 2 })
            assert.equal((await raw.command("CWD moved")).code, 250)
            assert.equal((await raw.command("RNFR x.txt")).code, 350)
            assert.equal((await raw.command("RNTO /nowhere/x.txt")).code, 550)
          }, { maxDirectoryRename: 3 }),
      )

      await t.step(
        "a rename that needs a multipart copy, refused by the server (s3rver has no UploadPartCopy), 550 and the file stays",
        () =>
          session(s3, async (raw, prefix) => {
            await store(raw, "big.bin", randomBytes(100))
            assert.equal((await raw.command("RNFR big.bin")).code, 350)
            const reply = await raw.command("RNTO copy.bin")
            assert.equal(reply.code, 550)
            assert.match(reply.text, /NotImplemented/)
            assert.deepEqual(await listed(s3, prefix), { "big.bin": 100 })
          }, { maxSingleCopy: 10 }),
      )

      await t.step(
        "what S3 can't do: APPE and REST+STOR 550, MFMT and SITE CHMOD 502, no unix facts in FEAT",
        () =>
          session(s3, async (raw, prefix) => {
            await store(raw, "a.txt", encoder.encode("hello"))
            assert.deepEqual(codes(await store(raw, "a.txt", encoder.encode("more"), "APPE")), [550])
            assert.equal((await raw.command("REST 2")).code, 350)
            assert.deepEqual(codes(await store(raw, "a.txt", encoder.encode("llo"))), [550])
            assert.equal((await raw.command("MFMT 20200101000000 a.txt")).code, 502)
            assert.equal((await raw.command("SITE CHMOD 600 a.txt")).code, 502)
            const feat = (await raw.command("FEAT")).lines.join("\n")
            assert.doesNotMatch(feat, /MFMT|unix\./)
            assert.equal(decoder.decode(await fetched(s3, `${prefix}/a.txt`)), "hello")
          }),
      )

      await t.step(
        "ABOR mid-upload: no object appears, the existing one stays, and ftpd aborts the multipart upload",
        () =>
          session(s3, async (raw, prefix, server) => {
            await store(raw, "keep.bin", encoder.encode("old"))
            const conn = await raw.passiveData()
            try {
              assert.equal((await raw.command("STOR keep.bin")).code, 150)
              await conn.write(randomBytes(11 * MiB))
              // Both full parts sent: the multipart upload exists on the server.
              const mine = async () => (await pendingUploads(s3)).filter((u) => u.key === `${prefix}/keep.bin`)
              const deadline = Date.now() + 10_000
              while ((await mine()).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
              const pending = await mine()
              assert.equal(pending.length, 1)
              await raw.send("ABOR")
              assert.equal((await raw.readReply()).code, 426)
              assert.equal((await raw.readReply()).code, 226)
              assert.equal(decoder.decode(await fetched(s3, `${prefix}/keep.bin`)), "old")
              assert.deepEqual(await listed(s3, prefix), { "keep.bin": 3 })
              // s3rver 3.7.1 answers AbortMultipartUpload with 405: what is left is that upload, and
              // the log says ftpd asked to abort it. A service with AbortMultipartUpload removes it.
              const left = await mine()
              assert.ok(
                left.length === 0 ||
                  (left.length === 1 && left[0].id === pending[0].id &&
                    server.logs.some((l) => l.includes(`could not abort the multipart upload ${pending[0].id}`))),
                `left: ${JSON.stringify(left)}; log: ${server.logs.join("\n")}`,
              )
            } finally {
              closeQuietly(conn)
            }
            assert.equal((await raw.command("NOOP")).code, 200)
          }, { partSize: 5 * MiB }),
      )

      // Over TCP: on the in-memory network a session that ends does not end its running transfer.
      await t.step("a session that ends mid-upload stores nothing", () =>
        session(
          s3,
          async (_raw, prefix, server) => {
            const raw = await loggedIn(server)
            await store(raw, "keep.bin", encoder.encode("old"))
            const conn = await raw.passiveData()
            assert.equal((await raw.command("STOR keep.bin")).code, 150)
            await conn.write(randomBytes(6 * MiB))
            raw.close()
            closeQuietly(conn)
            const deadline = Date.now() + 10_000
            while (!server.logs.some((l) => l.includes("STOR /keep.bin completed=0")) && Date.now() < deadline) {
              await new Promise((r) => setTimeout(r, 50))
            }
            assert.ok(server.logs.some((l) => l.includes("STOR /keep.bin completed=0")), server.logs.join("\n"))
            assert.deepEqual(await listed(s3, prefix), { "keep.bin": 3 })
            assert.equal(decoder.decode(await fetched(s3, `${prefix}/keep.bin`)), "old")
          },
          { partSize: 5 * MiB },
          { inMemory: false },
        ))

      await t.step("an upload whose data connection never comes (425) changes nothing", async () => {
        const prefix = `t${++prefixes}`
        const server = await serve(s3.filesystem({ prefix }), `s3://${s3.bucket}/${prefix}`, { dataTimeout: 1 })
        const raw = await loggedIn(server)
        try {
          await store(raw, "keep.bin", encoder.encode("old"))
          assert.equal((await raw.command("EPSV")).code, 229)
          assert.equal((await raw.command("STOR keep.bin")).code, 150)
          assert.equal((await raw.readReply()).code, 425)
          assert.equal(decoder.decode(await fetched(s3, `${prefix}/keep.bin`)), "old")
          assert.deepEqual(await listed(s3, prefix), { "keep.bin": 3 })
        } finally {
          raw.close()
          await server.close()
        }
      })

      await t.step("users' homes are key prefixes: each user stores under its own and sees only its own", async () => {
        const fs = s3.filesystem({ prefix: "homes" })
        const server = await serve(fs, "unused", {
          users: (a) =>
            a.addUser("alice", "a", "/alice", { perm: "elradfmwMT" }).addUser(
              "bob",
              "b",
              `s3://${s3.bucket}/homes/bob`,
              { perm: "elradfmwMT" },
            ),
        })
        try {
          const alice = await loggedIn(server, { user: "alice", password: "a" })
          const bob = await loggedIn(server, { user: "bob", password: "b" })
          assert.deepEqual(codes(await store(alice, "a.txt", encoder.encode("alice"))), [150, 226])
          assert.deepEqual(codes(await store(bob, "b.txt", encoder.encode("bob"))), [150, 226])
          assert.deepEqual(await listed(s3, "homes"), { "alice/a.txt": 5, "bob/b.txt": 3 })
          assert.deepEqual((await receive(alice, "NLST")).data, "a.txt\r\n")
          assert.equal((await alice.command("CWD ..")).code, 250, "the home is the root")
          assert.deepEqual((await receive(alice, "NLST")).data, "a.txt\r\n")
          assert.equal((await alice.command("SIZE /../bob/b.txt")).code, 550)
          alice.close()
          bob.close()
        } finally {
          await server.close()
        }
      })

      await t.step(
        "wrong credentials are 550 (permission), a missing bucket 550, and the session goes on",
        async () => {
          const wrong = await serve(
            s3.filesystem({ credentials: { accessKeyId: "nobody", secretAccessKey: "nope" } }),
            `s3://${s3.bucket}`,
          )
          const missing = await serve(s3.filesystem({ bucket: "nosuchbucket" }), "s3://nosuchbucket")
          try {
            const cases = [
              {
                server: wrong,
                get: /^S3 GET \/a\.txt: HTTP 403 InvalidAccessKeyId/,
              },
              { server: missing, get: /^No such file or directory\.$/ },
            ]
            for (const { server, get } of cases) {
              const raw = await loggedIn(server)
              const size = await raw.command("SIZE a.txt")
              // (s3rver answers a HEAD of a missing key 404 before it checks the signature)
              assert.equal(size.code, 550)
              const conn = await raw.passiveData()
              const retr = await raw.command("RETR a.txt")
              closeQuietly(conn)
              assert.equal(retr.code, 550)
              assert.match(retr.text, get, retr.text)
              assert.equal((await raw.command("NOOP")).code, 200)
              raw.close()
            }
          } finally {
            await wrong.close()
            await missing.close()
          }
        },
      )
    } finally {
      await s3.close()
    }
  },
})
