/**
 * The command table (pyftpdlib's `proto_cmds`): every command the server understands, with its
 * login rule, argument rule, help text and handler. The handlers live in `commands/`, by topic.
 *
 * @module
 */
import { dataCommands } from "./commands/data.ts"
import { fileCommands } from "./commands/files.ts"
import { infoCommands } from "./commands/info.ts"
import { listingCommands } from "./commands/listing.ts"
import { loginCommands } from "./commands/login.ts"
import { tlsCommands } from "./commands/tls.ts"
import { transferCommands } from "./commands/transfer.ts"
import type { CommandSpec } from "./session.ts"

/** Every built-in command, by name. */
export const builtinCommands: ReadonlyMap<string, CommandSpec> = new Map(
  [
    ...loginCommands,
    ...infoCommands,
    ...fileCommands,
    ...dataCommands,
    ...transferCommands,
    ...listingCommands,
    ...tlsCommands,
  ].map(
    (spec) => [spec.name, spec] as const,
  ),
)
