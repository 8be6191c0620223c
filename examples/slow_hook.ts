/**
 * Slow work on uploaded files: an `onFileReceived` hook writes `<file>.sha256` next to each upload.
 *
 * The hook waits a little first, standing in for work that takes time (a virus scan, a copy to
 * object storage). The server runs each hook in a fiber of its own, so the client that uploaded and
 * every other session are served meanwhile; hooks still running at shutdown are interrupted.
 *
 * ```sh
 * deno run --allow-net --allow-read=. --allow-write=. examples/slow_hook.ts
 * curl -T notes.txt ftp://user:12345@localhost:2121/   # notes.txt.sha256 appears 3 seconds later
 * ```
 *
 * Flags: `--host` (default: all interfaces), `--port` (2121), `--directory` (the current one),
 * `--delay SECONDS` (3).
 *
 * @module
 */
import { DummyAuthorizer, FtpLogger, FtpServer, Hooks, LocalFilesystem, runMain } from "../mod.ts"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { basename } from "node:path"
import { parseArgs } from "node:util"

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    host: { type: "string" },
    port: { type: "string", default: "2121" },
    directory: { type: "string", default: "." },
    delay: { type: "string", default: "3" },
  },
})

/** Write `sha256sum`'s line for `file` to `<file>.sha256`, reading the file in chunks. */
const writeChecksum = async (file: string): Promise<void> => {
  const hash = createHash("sha256")
  // Reading the stream to its end (or abandoning it) closes the file.
  for await (const chunk of (await Deno.open(file)).readable) hash.update(chunk)
  await Deno.writeTextFile(`${file}.sha256`, `${hash.digest("hex")}  ${basename(file)}\n`)
}

const hooks = Hooks.layer({
  // `file` is the real path of a file received completely.
  onFileReceived: (_session, file) =>
    file.endsWith(".sha256") ? Effect.void : Effect.gen(function* () {
      yield* Effect.sleep(`${Number(flags.delay)} seconds`)
      yield* Effect.tryPromise(() => writeChecksum(file))
      yield* Effect.logInfo(`wrote ${file}.sha256`)
    }).pipe(Effect.catch((error) => Effect.logWarning(`can't checksum ${file}: ${error.cause}`))),
})

const users = DummyAuthorizer.layer((authorizer) =>
  authorizer.addUser("user", "12345", flags.directory, { perm: "elradfmwMT" })
)

runMain(
  FtpServer.serve({ host: flags.host, port: Number(flags.port) }).pipe(
    Effect.provide([users, LocalFilesystem.layer, hooks]),
    Effect.provide(FtpLogger.layer()),
  ),
)
