/**
 * What each worker of examples/workers_ftpd.ts runs: the services of one server, built from the
 * data the main thread sent.
 *
 * @module
 */
import { DummyAuthorizer, FtpLogger, LocalFilesystem, serveInWorker } from "../mod.ts"
import { Layer } from "effect"

/** What the main thread sends every worker. */
export interface WorkerData {
  readonly directory: string
}

serveInWorker((start) => {
  const { directory } = start.data as WorkerData
  return Layer.mergeAll(
    DummyAuthorizer.layer((a) => a.addUser("user", "12345", directory, { perm: "elradfmwMT" }).addAnonymous(directory)),
    LocalFilesystem.layer,
  ).pipe(Layer.provideMerge(FtpLogger.layer()))
})
