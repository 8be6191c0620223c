/**
 * The `Hooks` service: notifications about sessions and transfers, pyftpdlib's `on_*` callbacks.
 *
 * Each hook is an Effect. The server runs hooks in fibers of their own, so a slow hook delays
 * neither its session nor any other; hooks still running when the server stops are interrupted.
 *
 * @module
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** Who a hook is about. */
export interface HookSession {
  readonly remoteAddress: string
  readonly remotePort: number
  readonly user: string | null
}

/** The notifications a server sends; every one is optional. */
export interface HooksShape {
  readonly onConnect?: (session: HookSession) => Effect.Effect<void>
  readonly onDisconnect?: (session: HookSession) => Effect.Effect<void>
  readonly onLogin?: (session: HookSession, user: string) => Effect.Effect<void>
  readonly onLoginFailed?: (session: HookSession, user: string) => Effect.Effect<void>
  readonly onLogout?: (session: HookSession, user: string) => Effect.Effect<void>
  /** `file` is the real path of a file sent completely. */
  readonly onFileSent?: (session: HookSession, file: string) => Effect.Effect<void>
  /** `file` is the real path of a file received completely. */
  readonly onFileReceived?: (session: HookSession, file: string) => Effect.Effect<void>
  readonly onIncompleteFileSent?: (session: HookSession, file: string) => Effect.Effect<void>
  readonly onIncompleteFileReceived?: (session: HookSession, file: string) => Effect.Effect<void>
}

/**
 * The hooks service. Without a layer of yours the server uses no-op hooks.
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
} = Object.assign(
  Context.Reference<HooksShape>("@ftpd/server/Hooks", { defaultValue: () => ({}) }),
  { layer: (hooks: HooksShape): Layer.Layer<never> => Layer.succeed(HooksRef, hooks) },
)
const HooksRef = Hooks as Context.Reference<HooksShape>

/** Type of the hook names. */
export type HookName = keyof HooksShape
