/**
 * A storage of your own, composed from layers: the shared directory on the local disk, a
 * `/scratch` directory kept in memory (at most 64 MiB, gone when the server stops), and a policy
 * of this program's own wrapped around both: uploads of Windows executables are refused with 553.
 *
 * The policy is a layer that takes the `Filesystem` service it is given and provides a new one,
 * changing only what it needs (`openWrite`); the mounts are a `MountFilesystem` over the local
 * disk and memory. Any `Filesystem` works the same way: a database, a remote API, encryption.
 *
 * ```sh
 * deno run --allow-net --allow-read=. --allow-write=. examples/custom_filesystem.ts
 * curl -T notes.txt ftp://user:12345@localhost:2121/scratch/   # kept in memory
 * curl -T setup.exe ftp://user:12345@localhost:2121/           # 553
 * ```
 *
 * Flags: `--host` (default: all interfaces), `--port` (2121), `--directory` (the current one).
 *
 * @module
 */
import {
  DummyAuthorizer,
  Filesystem,
  FilesystemError,
  FtpLogger,
  FtpServer,
  LocalFilesystem,
  makeMemoryFilesystem,
  MountFilesystem,
  runMain,
} from "../mod.ts"
import { Effect, Layer } from "effect"
import { parseArgs } from "node:util"

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    host: { type: "string" },
    port: { type: "string", default: "2121" },
    directory: { type: "string", default: "." },
  },
})

/** The local disk, with `/scratch` in memory. */
const storage = MountFilesystem.layer({
  base: LocalFilesystem.make(),
  mounts: [{ at: "/scratch", filesystem: makeMemoryFilesystem({ maxBytes: 64 << 20 }), root: "memory:/" }],
})

const FORBIDDEN = /\.(exe|bat|cmd|com|scr)$/i

/** Whatever filesystem it is given, refusing uploads whose name looks like a Windows executable. */
const noExecutables = Layer.effect(
  Filesystem,
  Effect.map(Filesystem, (inner) => ({
    ...inner,
    openWrite: (path, options) =>
      FORBIDDEN.test(path.virtual)
        ? Effect.fail(
          new FilesystemError({ path: path.virtual, reason: "BadName", detail: "Executables are not accepted here." }),
        )
        : inner.openWrite(path, options),
  })),
)

const users = DummyAuthorizer.layer((authorizer) =>
  authorizer.addUser("user", "12345", flags.directory, { perm: "elradfmwMT" })
)

runMain(
  FtpServer.serve({ host: flags.host, port: Number(flags.port) }).pipe(
    Effect.provide([users, noExecutables.pipe(Layer.provide(storage))]),
    Effect.provide(FtpLogger.layer()),
  ),
)
