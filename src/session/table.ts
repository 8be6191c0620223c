/**
 * The command table (pyftpdlib's `proto_cmds`): every command the server understands, as data.
 * A row says whether the command needs a login, its argument rule, its help text, the permission
 * letter it needs and on which path, what must hold before the path is looked at, and its handler.
 * The loop (`loop.ts`) checks all of that once, in that order, before the handler runs; the
 * rows and their handlers live in `commands/`, by topic, and `commands/mod.ts` gathers them.
 *
 * @module
 */
import * as Effect from "effect/Effect"
import type { Permission } from "../auth/authorizer.ts"
import type { CommandError } from "../errors.ts"
import type { Capabilities, FtpPath } from "../fs/filesystem.ts"
import type { Session } from "./session.ts"

/**
 * A command handler: replies through `session.reply`. `path` is the row's path, resolved and with
 * the row's permission checked; `undefined` when the row names no permission, or when its path
 * rule found the argument malformed (the handler then replies 501).
 */
export type Handler = (session: Session, arg: string, path: FtpPath | undefined) => Effect.Effect<void, CommandError>

/** A check that comes before the path: it replies and returns `false` to stop the command there. */
export type Guard = (session: Session, arg: string) => Effect.Effect<boolean>

/** Guards run one after the other, stopping at the first that stops the command. */
export const guards = (...all: ReadonlyArray<Guard>): Guard => (session, arg) =>
  Effect.gen(function* () {
    for (const guard of all) if (!(yield* guard(session, arg))) return false
    return true
  })

/** A guard that refuses a command the filesystem can't serve, with `code` and `text`. */
export const needs = (capability: keyof Capabilities, code: number, text: string): Guard => (session) =>
  session.server.capabilities[capability] ? Effect.succeed(true) : Effect.as(session.reply(code, text), false)

/** A row of the command table. */
export interface CommandSpec {
  readonly name: string
  /** Whether the command needs a logged-in user (530 before). */
  readonly needsLogin: boolean
  /** Argument rule (501 when broken). */
  readonly arg: "required" | "optional" | "none"
  /** Text of `HELP <name>`. */
  readonly help: string
  /** An FTPS command: `HELP` shows it only when TLS is configured (without TLS it is still answered, with a refusal). */
  readonly tls?: boolean
  /** What must hold before the path is looked at: RNTO after RNFR, no REST before APPE, ... */
  readonly guard?: Guard
  /** The permission letter the command needs on its path (550 without it). */
  readonly perm?: Permission
  /**
   * The path `perm` is about, taken from the argument (default: the argument itself);
   * `undefined` when the argument is malformed, which the handler answers.
   */
  readonly path?: (arg: string) => string | undefined
  readonly handler: Handler
}
