/**
 * The bench's ftpd for memory rows: `src/cli.ts` as it is, plus a full garbage collection at each
 * SIGUSR2. Run with `--v8-flags=--expose-gc`.
 *
 * @module
 */
import { main } from "../../src/cli.ts"

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error("ftpd_gc.ts needs --v8-flags=--expose-gc")
Deno.addSignalListener("SIGUSR2", gc)
await main(Deno.args)
