/**
 * FEAT lists every extension the server implements and nothing else (RFC 2389): the exact reply
 * with and without TLS, with the checksum commands off, and on a filesystem that can do little.
 * Each listed feature is then used, so that a line without its command behind it fails here.
 */
import assert from "node:assert/strict"
import { LocalFilesystem } from "../src/fs/local.ts"
import { loggedIn, makeCertificate, RawClient, startServer, type TestServerOptions } from "./helpers.ts"

const featOf = async (options: TestServerOptions): Promise<ReadonlyArray<string>> => {
  const server = await startServer({ ...options, inMemory: true })
  try {
    const raw = await loggedIn(server)
    try {
      return (await raw.command("FEAT")).lines
    } finally {
      raw.close()
    }
  } finally {
    await server.close()
  }
}

const CHECKSUMS = [" HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32", " XCRC", " XMD5", " XSHA1", " XSHA256", " XSHA512"]
const MLST_ALL = " MLST type*;perm*;size*;modify*;unique*;unix.mode;unix.uid;unix.gid;unix.owner;unix.group;"

/** The FEAT reply with the middle lines given. */
const reply = (...features: ReadonlyArray<string>) => ["211-Features supported:", ...features, "211 End FEAT."]

Deno.test("FEAT without TLS: exactly the extensions implemented", async () => {
  assert.deepEqual(
    await featOf({}),
    reply(
      " AVBL",
      " CLNT",
      " EPRT",
      " EPSV",
      ...CHECKSUMS,
      " HOST",
      " MDTM",
      " MFMT",
      MLST_ALL,
      " REST STREAM",
      " SIZE",
      " TVFS",
      " UTF8",
    ),
  )
})

Deno.test("FEAT with TLS adds AUTH TLS, AUTH SSL, PBSZ and PROT, nothing else", async () => {
  const cert = await makeCertificate()
  try {
    assert.deepEqual(
      await featOf({ tls: { cert: cert.cert, key: cert.key } }),
      reply(
        " AUTH TLS",
        " AUTH SSL",
        " PBSZ",
        " PROT",
        " AVBL",
        " CLNT",
        " EPRT",
        " EPSV",
        ...CHECKSUMS,
        " HOST",
        " MDTM",
        " MFMT",
        MLST_ALL,
        " REST STREAM",
        " SIZE",
        " TVFS",
        " UTF8",
      ),
    )
  } finally {
    await cert.remove()
  }
})

Deno.test("FEAT with the checksum commands off leaves out HASH and the X commands", async () => {
  assert.deepEqual(
    await featOf({ hashCommands: false }),
    reply(
      " AVBL",
      " CLNT",
      " EPRT",
      " EPSV",
      " HOST",
      " MDTM",
      " MFMT",
      MLST_ALL,
      " REST STREAM",
      " SIZE",
      " TVFS",
      " UTF8",
    ),
  )
})

Deno.test("FEAT on a filesystem without times, free space or Unix facts leaves out MFMT, AVBL and unix.*", async () => {
  const { available: _, ...local } = LocalFilesystem.make()
  const filesystem = {
    ...local,
    capabilities: { append: false, resume: false, chmod: false, setMtime: false, unixFacts: false },
  }
  assert.deepEqual(
    await featOf({ filesystem }),
    reply(
      " CLNT",
      " EPRT",
      " EPSV",
      ...CHECKSUMS,
      " HOST",
      " MDTM",
      " MLST type*;perm*;size*;modify*;unique*;",
      " REST STREAM",
      " SIZE",
      " TVFS",
      " UTF8",
    ),
  )
})

Deno.test("every FEAT line's command is implemented: none of them is answered 500 or 502", async () => {
  const server = await startServer({ inMemory: true })
  try {
    const raw = await loggedIn(server)
    try {
      await Deno.writeTextFile(`${server.root}/a.txt`, "a")
      const uses: Record<string, string> = {
        AVBL: "AVBL",
        CLNT: "CLNT test",
        EPRT: "EPRT |1|127.0.0.1|1|",
        EPSV: "EPSV ALL",
        HASH: "HASH a.txt",
        HOST: "HOST example.com",
        XCRC: "XCRC a.txt",
        XMD5: "XMD5 a.txt",
        XSHA1: "XSHA1 a.txt",
        XSHA256: "XSHA256 a.txt",
        XSHA512: "XSHA512 a.txt",
        MDTM: "MDTM a.txt",
        MFMT: "MFMT 20200101000000 a.txt",
        MLST: "MLST a.txt",
        REST: "REST 0",
        SIZE: "SIZE a.txt",
        TVFS: "CWD /",
        UTF8: "OPTS UTF8 ON",
      }
      const features = (await raw.command("FEAT")).lines.slice(1, -1).map((line) => line.trim().split(" ")[0])
      for (const feature of features) {
        const use = uses[feature]
        assert.ok(use !== undefined, `FEAT lists ${feature}, which this test does not know`)
        const code = (await raw.command(use)).code
        assert.ok(code !== 500 && code !== 502, `${use}: ${code}`)
      }
      // HOST comes before the login (503 after it): a fresh connection takes it.
      const fresh = await RawClient.connectTo(server)
      try {
        assert.equal((await fresh.command("HOST example.com")).code, 220)
      } finally {
        fresh.close()
      }
    } finally {
      raw.close()
    }
  } finally {
    await server.close()
  }
})
