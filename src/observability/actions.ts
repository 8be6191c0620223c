/**
 * Upload actions, as ready-made {@link HooksShape}: a program run after each completed upload
 * ({@link UploadCommand}), and a webhook that receives a JSON event for uploads, downloads,
 * deletes, renames, directories made and removed, logins and failed logins ({@link Webhook}).
 *
 * Both are bounded and never hold up a session: a hook only puts a job in a queue (`queue` jobs at
 * most; past it a job is dropped, logged and counted); `concurrency` workers run the jobs, each
 * given up after `timeout` seconds (a webhook retries a failed or timed-out POST `retries` times,
 * waiting 1 s, 2 s, 4 s, ... in between). Each job's result is counted in `ftpd_actions_total`
 * when metrics are on. Closing the scope stops the workers: a running program is killed.
 *
 * @module
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { type HookPath, Hooks, type HookSession, type HooksShape, type TransferDetails } from "../hooks.ts"
import { escapeControls } from "../log.ts"
import { type ActionName, type ActionResult, FtpMetrics } from "./metrics.ts"

/** How much an action may do at once, keep waiting, and take. */
export interface ActionLimits {
  /** Jobs running at once. Default 4. */
  readonly concurrency?: number
  /** Jobs waiting; past it new jobs are dropped (logged and counted). Default 1000. */
  readonly queue?: number
  /** Seconds a job (a webhook: each attempt) may take. Default 30. */
  readonly timeout?: number
}

/** Options of {@link Webhook}. */
export interface WebhookOptions extends ActionLimits {
  /** The http(s) URL events are POSTed to. */
  readonly url: string
  /** Attempts after the first when a POST fails (network error, timeout, 408, 429, 5xx). Default 3. */
  readonly retries?: number
}

/** Options of {@link UploadCommand}. */
export interface UploadCommandOptions extends ActionLimits {
  /** The program to run (no shell, no arguments): a path, or a name looked up in `PATH`. */
  readonly program: string
}

/** Why a job did not succeed. */
class ActionFailed {
  constructor(readonly result: "failed" | "timeout", readonly reason: string, readonly retry = true) {}
}

/**
 * A queue of jobs of `action` run by `concurrency` workers in the current scope. `push` never
 * waits: with the queue full it drops the job (logged and counted).
 */
const makeRunner = <J>(
  action: ActionName,
  limits: ActionLimits,
  describe: (job: J) => string,
  run: (job: J) => Effect.Effect<void, ActionFailed>,
): Effect.Effect<(job: J) => Effect.Effect<void>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const metrics = yield* FtpMetrics
    const capacity = limits.queue ?? 1000
    const queue = yield* Queue.bounded<J>(capacity)
    const report = (result: ActionResult) => metrics?.action(action, result)
    const worker = Effect.forever(Effect.flatMap(Queue.take(queue), (job) =>
      run(job).pipe(
        Effect.tap(() => Effect.sync(() => report("ok"))),
        Effect.catch((failure) =>
          Effect.andThen(
            Effect.sync(() => report(failure.result)),
            Effect.logWarning(`${action} for ${describe(job)} ${failure.result}: ${failure.reason}`),
          )
        ),
      )))
    for (let i = 0; i < (limits.concurrency ?? 4); i++) yield* Effect.forkScoped(worker)
    return (job: J) =>
      Queue.offerUnsafe(queue, job) ? Effect.void : Effect.andThen(
        Effect.sync(() => report("dropped")),
        Effect.logWarning(`${action} for ${describe(job)} dropped: ${capacity} jobs are waiting already`),
      )
  })

const timeoutOf = (limits: ActionLimits) => Duration.seconds(limits.timeout ?? 30)

/** An event as the webhook POSTs it. */
export interface WebhookEvent {
  /** `upload`, `download`, `delete`, `rename`, `mkdir`, `rmdir`, `login` or `login_failed`. */
  readonly event: string
  /** ISO 8601, UTC. */
  readonly time: string
  readonly session: string
  readonly client: { readonly address: string; readonly port: number }
  /** The user logged in (for `login_failed`: the name tried). */
  readonly user: string | null
  readonly [field: string]: unknown
}

const webhookEvent = (event: string, session: HookSession, fields: Record<string, unknown> = {}): WebhookEvent => ({
  event,
  time: new Date().toISOString(),
  session: session.id,
  client: { address: session.remoteAddress, port: session.remotePort },
  user: session.user,
  ...fields,
})

/** Worth another try: the receiver may be back, or less busy, soon. */
const retryable = (status: number) => status === 408 || status === 429 || status >= 500

const post = (url: string, body: string, limits: ActionLimits): Effect.Effect<void, ActionFailed> =>
  Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        signal,
      })
      await response.body?.cancel()
      return response.status
    },
    catch: (error) => new ActionFailed("failed", String((error as Error).message ?? error)),
  }).pipe(
    Effect.timeoutOrElse({
      duration: timeoutOf(limits),
      orElse: () => Effect.fail(new ActionFailed("timeout", `no answer within ${limits.timeout ?? 30} s`)),
    }),
    Effect.flatMap((status) =>
      status >= 200 && status < 300
        ? Effect.void
        : Effect.fail(new ActionFailed("failed", `HTTP ${status}`, retryable(status)))
    ),
  )

const makeWebhook = (options: WebhookOptions): Effect.Effect<HooksShape, never, Scope.Scope> =>
  Effect.gen(function* () {
    const retries = options.retries ?? 3
    const push = yield* makeRunner<WebhookEvent>(
      "webhook",
      options,
      (event) => `${event.event} (session ${event.session})`,
      (event) =>
        post(options.url, JSON.stringify(event), options).pipe(
          Effect.retry({
            times: retries,
            schedule: Schedule.exponential("1 second"),
            while: (failure) => failure.retry,
          }),
        ),
    )
    const send = (event: string, session: HookSession, fields?: Record<string, unknown>) =>
      Effect.suspend(() => push(webhookEvent(event, session, fields)))
    const file = (session: HookSession, event: string, file: string, transfer: TransferDetails) =>
      send(event, session, { path: transfer.path, file, size: transfer.bytes, seconds: transfer.seconds })
    const path = (event: string) => (session: HookSession, path: HookPath) =>
      send(event, session, { path: path.virtual, file: path.real })
    return {
      onLogin: (session, user) => send("login", session, { user }),
      onLoginFailed: (session, user) => send("login_failed", session, { user }),
      onFileReceived: (session, real, transfer) => file(session, "upload", real, transfer),
      onFileSent: (session, real, transfer) => file(session, "download", real, transfer),
      onFileDeleted: path("delete"),
      onDirectoryCreated: path("mkdir"),
      onDirectoryRemoved: path("rmdir"),
      onRenamed: (session, from, to) =>
        send("rename", session, { from: from.virtual, to: to.virtual, fromFile: from.real, toFile: to.real }),
    }
  })

/** What an upload command is run for. */
interface Upload {
  readonly session: HookSession
  readonly file: string
  readonly transfer: TransferDetails
}

/** Bytes of a failing program's standard error kept for the log line. */
const STDERR_KEPT = 500

/** The last {@link STDERR_KEPT} bytes of `stream`, read to its end. */
const tail = async (stream: ReadableStream<Uint8Array>): Promise<string> => {
  let kept = new Uint8Array(0)
  for await (const chunk of stream) {
    const joined = new Uint8Array(kept.length + chunk.length)
    joined.set(kept)
    joined.set(chunk, kept.length)
    kept = joined.subarray(Math.max(0, joined.length - STDERR_KEPT))
  }
  return new TextDecoder().decode(kept).trim()
}

/** Run `program` for `upload`: killed at the timeout or when interrupted. */
const runProgram = (program: string, upload: Upload, limits: ActionLimits): Effect.Effect<void, ActionFailed> =>
  Effect.callback<void, ActionFailed>((resume) => {
    const { session, file, transfer } = upload
    let child: Deno.ChildProcess
    try {
      child = new Deno.Command(program, {
        // Data only in the environment: nothing a client chose is ever parsed by a shell.
        env: {
          FTPD_PATH: file,
          FTPD_VIRTUAL_PATH: transfer.path,
          FTPD_SIZE: String(transfer.bytes),
          FTPD_USER: session.user ?? "",
          FTPD_REMOTE_ADDRESS: session.remoteAddress,
          FTPD_REMOTE_PORT: String(session.remotePort),
          FTPD_SESSION: session.id,
        },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn()
    } catch (error) {
      resume(Effect.fail(new ActionFailed("failed", `can't run ${program}: ${(error as Error).message}`)))
      return
    }
    const kill = () => {
      try {
        child.kill("SIGKILL")
      } catch {
        // Exited already.
      }
    }
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      kill()
    }, Duration.toMillis(timeoutOf(limits)))
    const stderrTail = tail(child.stderr).catch(() => "")
    child.status.then(async (status) => {
      clearTimeout(timer)
      // A program that left a child behind holding its standard error open is not waited for.
      const stderr = await Promise.race([stderrTail, new Promise<string>((done) => setTimeout(() => done(""), 1000))])
      if (timedOut) {
        return resume(Effect.fail(new ActionFailed("timeout", `killed after ${limits.timeout ?? 30} s`)))
      }
      if (status.success) return resume(Effect.void)
      const how = status.signal === null ? `exit code ${status.code}` : `signal ${status.signal}`
      resume(Effect.fail(new ActionFailed("failed", `${how}${stderr === "" ? "" : `: ${escapeControls(stderr)}`}`)))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      kill()
    })
  })

const makeUploadCommand = (options: UploadCommandOptions): Effect.Effect<HooksShape, never, Scope.Scope> =>
  Effect.gen(function* () {
    const push = yield* makeRunner<Upload>(
      "on_upload",
      options,
      (upload) => upload.transfer.path,
      (upload) => runProgram(options.program, upload, options),
    )
    return {
      onFileReceived: (session, file, transfer) => Effect.suspend(() => push({ session, file, transfer })),
    }
  })

/**
 * A webhook: a JSON event POSTed for each upload, download, delete, rename, directory made or
 * removed, login and failed login. `make` gives the hooks (to merge with others through
 * `Hooks.merge`); `layer` provides them as the server's `Hooks`.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { DummyAuthorizer, FtpServer, LocalFilesystem, Webhook } from "@ftpd/server"
 *
 * const users = DummyAuthorizer.layer((a) => a.addUser("user", "12345", Deno.cwd(), { perm: "elradfmwMT" }))
 * const server = FtpServer.layer({ host: "127.0.0.1", port: 2121 })
 * const webhook = Webhook.layer({ url: "http://127.0.0.1:8080/ftp-events", timeout: 10 })
 * Layer.launch(server.pipe(Layer.provide([users, LocalFilesystem.layer, webhook]))).pipe(Effect.runFork)
 * ```
 */
export const Webhook: {
  readonly make: (options: WebhookOptions) => Effect.Effect<HooksShape, never, Scope.Scope>
  readonly layer: (options: WebhookOptions) => Layer.Layer<never>
} = {
  make: makeWebhook,
  layer: (options) => Layer.effect(Hooks, makeWebhook(options)),
}

/**
 * A program run after each completed upload, with the upload in its environment (`FTPD_PATH`,
 * `FTPD_VIRTUAL_PATH`, `FTPD_SIZE`, `FTPD_USER`, `FTPD_REMOTE_ADDRESS`, `FTPD_REMOTE_PORT`,
 * `FTPD_SESSION`) besides the server's own. It gets no arguments and no shell parses anything.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { DummyAuthorizer, FtpServer, LocalFilesystem, UploadCommand } from "@ftpd/server"
 *
 * const users = DummyAuthorizer.layer((a) => a.addUser("user", "12345", Deno.cwd(), { perm: "elradfmwMT" }))
 * const server = FtpServer.layer({ host: "127.0.0.1", port: 2121 })
 * const scan = UploadCommand.layer({ program: "/usr/local/bin/scan-upload", concurrency: 2 })
 * Layer.launch(server.pipe(Layer.provide([users, LocalFilesystem.layer, scan]))).pipe(Effect.runFork)
 * ```
 */
export const UploadCommand: {
  readonly make: (options: UploadCommandOptions) => Effect.Effect<HooksShape, never, Scope.Scope>
  readonly layer: (options: UploadCommandOptions) => Layer.Layer<never>
} = {
  make: makeUploadCommand,
  layer: (options) => Layer.effect(Hooks, makeUploadCommand(options)),
}
