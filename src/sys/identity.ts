/**
 * Acting as a system user for one synchronous stretch of file operations, on the calling thread
 * only, through Linux's per-thread credentials: `setfsuid` and `setfsgid` (the ids the kernel
 * checks file access against), and the raw `setgroups` system call (glibc's `setgroups` changes
 * every thread of the process; the system call changes the calling thread's alone). Root's file
 * capabilities (`CAP_DAC_OVERRIDE` and the like) leave the thread while its fsuid is not 0 and come
 * back with it.
 *
 * The process's own uid never changes, so two sessions of different users never race over it (as
 * `seteuid` per operation would): the filesystem sets a user's identity around each operation's
 * system calls, which run synchronously on the JavaScript thread with no `await` in between, and
 * puts the server's back before anything else runs there. Measured: a switch and its restore cost
 * about 13-20 µs (each credential change about 2 µs in the kernel, plus FFI), once per operation.
 *
 * Needs `--allow-ffi`, Linux, and the right to change ids (root, or `CAP_SETUID` and `CAP_SETGID`).
 *
 * @module
 */
import { libc } from "./libc.ts"

/** A system user's file-access identity: uid, primary gid and every group it is in. */
export interface Identity {
  readonly uid: number
  readonly gid: number
  /** Supplementary groups (the primary group may be among them). */
  readonly groups: ReadonlyArray<number>
}

const SYS_SETGROUPS: Record<string, bigint> = { x86_64: 116n, aarch64: 159n }
/** An id the kernel refuses: `setfsuid(INVALID)` changes nothing and returns the current fsuid. */
const INVALID = 0xffffffff

const symbols = {
  setfsuid: { parameters: ["u32"], result: "i32" },
  setfsgid: { parameters: ["u32"], result: "i32" },
  geteuid: { parameters: [], result: "u32" },
  getegid: { parameters: [], result: "u32" },
  getgroups: { parameters: ["i32", "buffer"], result: "i32" },
  syscall: { parameters: ["i64", "i64", "buffer"], result: "i64" },
} as const

/** Run `f` with the file access rights of `identity` on this thread, then the server's again. */
export type AsIdentity = <A>(identity: Identity, f: () => A) => A

/** Why acting as another user is impossible here, or the function that does it. */
export type Identities = { readonly asIdentity: AsIdentity } | { readonly missing: string }

const groupBytes = (groups: ReadonlyArray<number>): Uint8Array => new Uint8Array(Uint32Array.from(groups).buffer)

/** Kept per identity object: the group list in the form the system call takes. */
const encodedGroups = new WeakMap<Identity, Uint8Array>()

const load = (): Identities => {
  if (libc() === null) return { missing: "--allow-ffi (the C library, on Linux x86_64 or aarch64)" }
  const setgroups = SYS_SETGROUPS[Deno.build.arch]
  let c: Deno.DynamicLibrary<typeof symbols>["symbols"]
  try {
    c = Deno.dlopen("libc.so.6", symbols).symbols
  } catch {
    return { missing: "the GNU C library (libc.so.6)" }
  }
  if (c.geteuid() !== 0) return { missing: "root" }
  const own = { uid: c.geteuid(), gid: c.getegid() }
  const count = c.getgroups(0, new Uint8Array(0))
  const ownGroupsBuffer = new Uint32Array(Math.max(count, 0))
  c.getgroups(ownGroupsBuffer.length, new Uint8Array(ownGroupsBuffer.buffer))
  const ownGroups = new Uint8Array(ownGroupsBuffer.buffer)
  const setGroups = (bytes: Uint8Array) => {
    if (c.syscall(setgroups, BigInt(bytes.length / 4), bytes) !== 0n) throw new Error("setgroups failed")
  }
  const become = (uid: number, gid: number, groups: Uint8Array) => {
    c.setfsgid(gid)
    setGroups(groups)
    c.setfsuid(uid)
    // setfsuid and setfsgid report no error: ask the kernel what is in force now.
    if (c.setfsuid(INVALID) !== uid || c.setfsgid(INVALID) !== gid) throw new Error("setfsuid/setfsgid failed")
  }
  const restore = () => {
    try {
      become(own.uid, own.gid, ownGroups)
    } catch (error) {
      // A thread left with a user's rights would serve the next session with them: stop instead.
      console.error(`ftpd: could not restore the server's file identity (${error}); exiting`)
      Deno.exit(70)
    }
  }
  const asIdentity: AsIdentity = (identity, f) => {
    let groups = encodedGroups.get(identity)
    if (groups === undefined) encodedGroups.set(identity, groups = groupBytes(identity.groups))
    try {
      become(identity.uid, identity.gid, groups)
      return f()
    } finally {
      restore()
    }
  }
  return { asIdentity }
}

let loaded: Identities | undefined

/**
 * Acting as another user on this thread, or why it can't be done here (no FFI, not root).
 *
 * @example
 * ```ts
 * import { identities } from "./identity.ts"
 * const found = identities()
 * if ("asIdentity" in found) found.asIdentity({ uid: 65534, gid: 65534, groups: [] }, () => Deno.statSync("/"))
 * ```
 */
export const identities = (): Identities => {
  if (loaded === undefined) loaded = load()
  return loaded
}
