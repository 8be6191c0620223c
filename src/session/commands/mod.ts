/**
 * Every built-in command: the rows of `commands/*.ts`, gathered into the table the server uses.
 *
 * @module
 */
import type { CommandSpec } from "../table.ts"
import { checksumCommands } from "./checksums.ts"
import { dataCommands } from "./data.ts"
import { extensionCommands } from "./extensions.ts"
import { fileCommands } from "./files.ts"
import { infoCommands } from "./info.ts"
import { listingCommands } from "./listing.ts"
import { loginCommands } from "./login.ts"
import { tlsCommands } from "./tls.ts"
import { transferCommands } from "./transfer.ts"

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
    ...checksumCommands,
    ...extensionCommands,
  ].map((spec) => [spec.name, spec] as const),
)
