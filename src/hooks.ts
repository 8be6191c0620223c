/**
 * The `Hooks` service: notifications about sessions and transfers, pyftpdlib's `on_*` callbacks.
 *
 * Each hook is an Effect. The server runs hooks in fibers of their own, so a slow hook delays
 * neither its session nor any other; hooks still running when the server stops are interrupted.
 *
 * @module
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** Who a hook is about. */
export interface HookSession {
  /** The session's id, as in its JSON log lines and traces. */
  readonly id: string
  readonly remoteAddress: string
  readonly remotePort: number
  readonly user: string | null
  /** The virtual host the client named with HOST (RFC 7151), lower-cased, or `null`. */
  readonly host: string | null
}

/** A path as the client sees it (`virtual`) and where it is (`real`). */
export interface HookPath {
  readonly virtual: string
  readonly real: string
}

/** What a file hook learns of its transfer. */
export interface TransferDetails {
  /** The file as the client named it. */
  readonly path: string
  /** Bytes moved (for an upload: the bytes that reached the file). */
  readonly bytes: number
  readonly seconds: number
}

/** The notifications a server sends; every one is optional. */
export interface HooksShape {
  readonly onConnect?: (session: HookSession) => Effect.Effect<void>
  readonly onDisconnect?: (session: HookSession) => Effect.Effect<void>
  readonly onLogin?: (session: HookSession, user: string) => Effect.Effect<void>
  readonly onLoginFailed?: (session: HookSession, user: string) => Effect.Effect<void>
  readonly onLogout?: (session: HookSession, user: string) => Effect.Effect<void>
  /** `file` is the real path of a file sent completely. */
  readonly onFileSent?: (session: HookSession, file: string, transfer: TransferDetails) => Effect.Effect<void>
  /** `file` is the real path of a file received completely. */
  readonly onFileReceived?: (session: HookSession, file: string, transfer: TransferDetails) => Effect.Effect<void>
  readonly onIncompleteFileSent?: (
    session: HookSession,
    file: string,
    transfer: TransferDetails,
  ) => Effect.Effect<void>
  readonly onIncompleteFileReceived?: (
    session: HookSession,
    file: string,
    transfer: TransferDetails,
  ) => Effect.Effect<void>
  /** A file was deleted (DELE). */
  readonly onFileDeleted?: (session: HookSession, path: HookPath) => Effect.Effect<void>
  /** A file or directory was renamed (RNFR + RNTO). */
  readonly onRenamed?: (session: HookSession, from: HookPath, to: HookPath) => Effect.Effect<void>
  /** A directory was made (MKD). */
  readonly onDirectoryCreated?: (session: HookSession, path: HookPath) => Effect.Effect<void>
  /** A directory was removed (RMD). */
  readonly onDirectoryRemoved?: (session: HookSession, path: HookPath) => Effect.Effect<void>
}

const HOOK_NAMES: ReadonlyArray<keyof HooksShape> = [
  "onConnect",
  "onDisconnect",
  "onLogin",
  "onLoginFailed",
  "onLogout",
  "onFileSent",
  "onFileReceived",
  "onIncompleteFileSent",
  "onIncompleteFileReceived",
  "onFileDeleted",
  "onRenamed",
  "onDirectoryCreated",
  "onDirectoryRemoved",
]

/** Every hook of `all` that has one, run one after the other (each set's own failure does not stop the next). */
const merge = (...all: ReadonlyArray<HooksShape>): HooksShape => {
  const merged: Record<string, unknown> = {}
  for (const name of HOOK_NAMES) {
    const hooks = all.map((set) => set[name]).filter((hook) => hook !== undefined) as Array<
      (...args: ReadonlyArray<unknown>) => Effect.Effect<void>
    >
    if (hooks.length === 1) merged[name] = hooks[0]
    else if (hooks.length > 1) {
      merged[name] = (...args: ReadonlyArray<unknown>) =>
        Effect.forEach(
          hooks,
          (hook) => Effect.catchCause(hook(...args), (cause) => Effect.logError(`A hook (${name}) failed`, cause)),
          { discard: true },
        )
    }
  }
  return merged as HooksShape
}

/**
 * The hooks service. Without a layer of yours the server uses no-op hooks. `Hooks.merge` runs
 * several sets of hooks (yours, a webhook's, an upload command's) as one.
 *
 * @example
 * ```ts
 * import { Hooks } from "@ftpd/server"
 * import { Effect } from "effect"
 * const hooks = Hooks.layer({
 *   onFileReceived: (_session, file) => Effect.log(`received ${file}`),
 * })
 * ```
 */
export const Hooks: Context.Reference<HooksShape> & {
  readonly layer: (hooks: HooksShape) => Layer.Layer<never>
  /** One set of hooks running every hook of `all`, in order. */
  readonly merge: (...all: ReadonlyArray<HooksShape>) => HooksShape
} = Object.assign(
  Context.Reference<HooksShape>("@ftpd/server/Hooks", { defaultValue: () => ({}) }),
  { layer: (hooks: HooksShape): Layer.Layer<never> => Layer.succeed(HooksRef, hooks), merge },
)
const HooksRef = Hooks as Context.Reference<HooksShape>

/** Type of the hook names. */
export type HookName = keyof HooksShape
