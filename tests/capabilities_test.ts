/**
 * A filesystem that declares what it can't do gets clear refusals for those commands, and FEAT
 * and the MLSx facts stop advertising them; session code asks capabilities, never a backend.
 */
import assert from "node:assert/strict"
import type { FilesystemShape } from "../src/fs/filesystem.ts"
import { LocalFilesystem } from "../src/fs/local.ts"
import { receive, withLoggedIn } from "./helpers.ts"

/** The local filesystem, declaring that it can do none of the optional things. */
const limited = (): FilesystemShape => ({
  ...LocalFilesystem.make(),
  capabilities: { append: false, resume: false, chmod: false, setMtime: false, unixFacts: false },
})

Deno.test("a filesystem without append, resume, chmod, times or Unix facts: APPE and REST+STOR 550, MFMT and SITE CHMOD 502", () =>
  withLoggedIn({ filesystem: limited(), inMemory: true }, async (server, raw) => {
    await Deno.writeTextFile(`${server.root}/a.txt`, "hello")
    assert.deepEqual([(await raw.command("APPE a.txt")).code], [550])
    assert.equal((await raw.command("REST 2")).code, 350)
    const stor = await raw.command("STOR a.txt")
    assert.deepEqual([stor.code, stor.text], [
      550,
      "Can't resume an upload (REST before STOR): this storage can't write into an existing file.",
    ])
    assert.equal((await raw.command("MFMT 20200101000000 a.txt")).code, 502)
    assert.equal((await raw.command("SITE CHMOD 600 a.txt")).code, 502)
    assert.equal(await Deno.readTextFile(`${server.root}/a.txt`), "hello")
    const feat = (await raw.command("FEAT")).lines.join("\n")
    assert.doesNotMatch(feat, /MFMT/)
    assert.match(feat, /MLST type\*;perm\*;size\*;modify\*;unique\*;\r?$/m)
    assert.doesNotMatch(feat, /unix\./)
    assert.equal((await raw.command("OPTS MLST type;unix.mode;")).text, "MLST OPTS type;")
    assert.deepEqual((await receive(raw, "RETR a.txt")).data, "hello", "what it can do still works")
  }))

Deno.test("the local filesystem declares every capability: FEAT lists MFMT and the unix facts", () =>
  withLoggedIn({ inMemory: true }, async (_server, raw) => {
    const feat = (await raw.command("FEAT")).lines.join("\n")
    assert.match(feat, /MFMT/)
    assert.match(feat, /unix\.mode;unix\.uid;unix\.gid;/)
  }))
