/**
 * Import this module before `effect` loads (the entry points do it on their first line).
 *
 * Effect 4.1 captures a `node:async_hooks` `AsyncResource` on every fiber suspension when the
 * runtime offers one through `process.getBuiltinModule`. On Deno 2.9 each capture retains about
 * 450 bytes until the fiber ends, so a long session or the accept loop would grow without bound
 * (measured: one session of 20,000 commands held 10 MB more heap until it closed). Hiding the module from that one lookup turns
 * the capture off; `import "node:async_hooks"` keeps working for everyone else.
 *
 * @module
 */
const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process
const lookup = proc?.getBuiltinModule
if (proc !== undefined && lookup !== undefined) {
  proc.getBuiltinModule = (id: string) =>
    id === "node:async_hooks" || id === "async_hooks" ? undefined : lookup.call(proc, id)
}
