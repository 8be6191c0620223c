/**
 * The worker module of the tests' servers with workers (`startServer` with `FTPD_TEST_WORKERS`, and
 * tests/workers_test.ts): the tests' default users on the root given as data, and log lines sent
 * back to the test.
 */
import "../src/_no_async_hooks.ts"
import { Layer } from "effect"
import { DummyAuthorizer } from "../src/auth/dummy.ts"
import { type JailMode, LocalFilesystem, UnixFilesystem } from "../src/fs/local.ts"
import { FtpLogger, type LogFormat } from "../src/log.ts"
import { forwardLog, serveInWorker } from "../src/workers/worker.ts"

/** What a test sends its workers. */
export interface FixtureData {
  readonly root: string
  readonly jail?: JailMode
  readonly unix?: boolean
  readonly debug?: boolean
  readonly logFormat?: LogFormat
}

serveInWorker((start) => {
  const data = start.data as FixtureData
  return Layer.mergeAll(
    DummyAuthorizer.layer((a) => a.addUser("user", "pass", data.root, { perm: "elradfmwMT" }).addAnonymous(data.root)),
    data.unix ? UnixFilesystem.layer : LocalFilesystem.layerWith({ jail: data.jail ?? "auto" }),
  ).pipe(Layer.provideMerge(FtpLogger.layer({ debug: data.debug ?? false, format: data.logFormat, write: forwardLog })))
})
