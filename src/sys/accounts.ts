/**
 * The machine's user and group database: names for uids and gids (listings), and users by name
 * (system logins). Through the C library (`getpwnam_r`, `getpwuid_r`, `getgrgid_r`,
 * `getgrouplist`), which asks every source the system is configured with (files, LDAP, ...), when
 * FFI is granted; otherwise from `/etc/passwd` and `/etc/group` when the process may read them;
 * otherwise nothing is known and callers show numbers.
 *
 * Lookups by id are remembered (a listing of a directory asks for the same few ids thousands of
 * times); lookups by name are not (a changed account must be seen at the next login).
 *
 * @module
 */
import { libc } from "./libc.ts"

/** One account of the system's user database. */
export interface SystemUser {
  readonly name: string
  readonly uid: number
  /** The primary group. */
  readonly gid: number
  readonly home: string
  readonly shell: string
}

const symbols = {
  getpwnam_r: { parameters: ["buffer", "buffer", "buffer", "usize", "buffer"], result: "i32", nonblocking: true },
  getpwuid_r: { parameters: ["u32", "buffer", "buffer", "usize", "buffer"], result: "i32" },
  getgrgid_r: { parameters: ["u32", "buffer", "buffer", "usize", "buffer"], result: "i32" },
  getgrouplist: { parameters: ["buffer", "u32", "buffer", "buffer"], result: "i32" },
} as const

const encoder = new TextEncoder()

let lib: Deno.DynamicLibrary<typeof symbols>["symbols"] | null | undefined

/** The C library's account calls, or `null` without FFI. */
const c = () => {
  if (lib === undefined) {
    lib = null
    if (libc() !== null) {
      try {
        lib = Deno.dlopen("libc.so.6", symbols).symbols
      } catch {
        lib = null
      }
    }
  }
  return lib
}

/** The NUL-terminated string at `pointer`. */
const cString = (pointer: Deno.PointerValue): string =>
  pointer === null ? "" : new Deno.UnsafePointerView(pointer).getCString()

/** A `struct passwd` (LP64: five pointers around two 32-bit ids). */
const parsePasswd = (record: Uint8Array): SystemUser => {
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength)
  const pointer = (offset: number) => Deno.UnsafePointer.create(view.getBigUint64(offset, true))
  return {
    name: cString(pointer(0)),
    uid: view.getUint32(16, true),
    gid: view.getUint32(20, true),
    home: cString(pointer(32)),
    shell: cString(pointer(40)),
  }
}

const PASSWD_SIZE = 48
const BUFFER_SIZE = 16 << 10

/** `/etc/passwd` or `/etc/group` as lines of fields, or `[]` when it can't be read. */
const databaseFile = (path: string): string[][] => {
  try {
    return Deno.readTextFileSync(path).split("\n").filter((line) => line !== "" && !line.startsWith("#")).map(
      (line) => line.split(":"),
    )
  } catch {
    return []
  }
}

const fromPasswdLine = (fields: string[]): SystemUser => ({
  name: fields[0],
  uid: Number(fields[2]),
  gid: Number(fields[3]),
  home: fields[5] ?? "/",
  shell: fields[6] ?? "",
})

/**
 * The account named `name`, or `undefined` when there is none (or nothing can be looked up).
 *
 * @example
 * ```ts
 * import { systemUser } from "./accounts.ts"
 * console.log((await systemUser("root"))?.uid) // 0
 * ```
 */
export const systemUser = async (name: string): Promise<SystemUser | undefined> => {
  const calls = c()
  if (calls === null) {
    const line = databaseFile("/etc/passwd").find((fields) => fields[0] === name)
    return line === undefined ? undefined : fromPasswdLine(line)
  }
  const record = new Uint8Array(PASSWD_SIZE)
  const buffer = new Uint8Array(BUFFER_SIZE)
  const result = new BigUint64Array(1)
  const status = await calls.getpwnam_r(
    encoder.encode(name + "\0"),
    record,
    buffer,
    BigInt(buffer.length),
    new Uint8Array(result.buffer),
  )
  return status !== 0 || result[0] === 0n ? undefined : parsePasswd(record)
}

const MEMO_LIMIT = 4096
const userNames = new Map<number, string | null>()
const groupNames = new Map<number, string | null>()

const remembered = (memo: Map<number, string | null>, id: number, find: () => string | null): string | null => {
  let name = memo.get(id)
  if (name === undefined) {
    if (memo.size >= MEMO_LIMIT) memo.clear()
    name = find()
    memo.set(id, name)
  }
  return name
}

/**
 * The name of user `uid`, or `null` when the system does not know it.
 *
 * @example
 * ```ts
 * import { userName } from "./accounts.ts"
 * console.log(userName(0)) // "root"
 * ```
 */
export const userName = (uid: number): string | null =>
  remembered(userNames, uid, () => {
    const calls = c()
    if (calls === null) return databaseFile("/etc/passwd").find((fields) => Number(fields[2]) === uid)?.[0] ?? null
    const record = new Uint8Array(PASSWD_SIZE)
    const buffer = new Uint8Array(BUFFER_SIZE)
    const result = new BigUint64Array(1)
    const status = calls.getpwuid_r(uid, record, buffer, BigInt(buffer.length), new Uint8Array(result.buffer))
    return status !== 0 || result[0] === 0n ? null : parsePasswd(record).name
  })

/**
 * The name of group `gid`, or `null` when the system does not know it.
 *
 * @example
 * ```ts
 * import { groupName } from "./accounts.ts"
 * console.log(groupName(0)) // "root"
 * ```
 */
export const groupName = (gid: number): string | null =>
  remembered(groupNames, gid, () => {
    const calls = c()
    if (calls === null) return databaseFile("/etc/group").find((fields) => Number(fields[2]) === gid)?.[0] ?? null
    const record = new Uint8Array(32)
    const buffer = new Uint8Array(BUFFER_SIZE)
    const result = new BigUint64Array(1)
    const status = calls.getgrgid_r(gid, record, buffer, BigInt(buffer.length), new Uint8Array(result.buffer))
    if (status !== 0 || result[0] === 0n) return null
    return cString(Deno.UnsafePointer.create(new DataView(record.buffer).getBigUint64(0, true)))
  })

/**
 * Every group `user` belongs to: its primary group `gid` and its supplementary groups.
 *
 * @example
 * ```ts
 * import { groupsOf } from "./accounts.ts"
 * console.log(groupsOf("root", 0).includes(0)) // true
 * ```
 */
export const groupsOf = (user: string, gid: number): number[] => {
  const calls = c()
  if (calls === null) {
    const groups = databaseFile("/etc/group").filter((fields) => (fields[3] ?? "").split(",").includes(user))
    return [gid, ...groups.map((fields) => Number(fields[2])).filter((g) => g !== gid)]
  }
  for (let size = 64;; size *= 4) {
    const groups = new Uint32Array(size)
    const count = new Int32Array([size])
    const found = calls.getgrouplist(
      encoder.encode(user + "\0"),
      gid,
      new Uint8Array(groups.buffer),
      new Uint8Array(count.buffer),
    )
    if (found >= 0) return [...groups.subarray(0, count[0])]
    if (size > 1 << 16) return [gid]
  }
}

/** Forget the names remembered (after the system's accounts changed). */
export const forgetNames = (): void => {
  userNames.clear()
  groupNames.clear()
}

/** A user's entry in the shadow database: the password hash and when the account expires. */
export interface ShadowEntry {
  /** The hash (`$y$...`, `$6$...`), or a locked or empty field (`!`, `*`, `""`). */
  readonly hash: string
  /** The day (since 1970-01-01) from which the account is expired, or `undefined` for never. */
  readonly expireDay: number | undefined
}

const shadowSymbols = {
  getspnam_r: { parameters: ["buffer", "buffer", "buffer", "usize", "buffer"], result: "i32", nonblocking: true },
  setusershell: { parameters: [], result: "void" },
  getusershell: { parameters: [], result: "pointer" },
  endusershell: { parameters: [], result: "void" },
} as const

let shadowLib: Deno.DynamicLibrary<typeof shadowSymbols>["symbols"] | null | undefined

const shadowCalls = () => {
  if (shadowLib === undefined) {
    shadowLib = null
    if (libc() !== null) {
      try {
        shadowLib = Deno.dlopen("libc.so.6", shadowSymbols).symbols
      } catch {
        shadowLib = null
      }
    }
  }
  return shadowLib
}

/** `struct spwd` (LP64): two pointers, then seven longs and an unsigned long. */
const SPWD_SIZE = 72

/**
 * The shadow entry of `name` (`getspnam_r`, every source the system is configured with), off the
 * event loop; `undefined` when there is none or it can't be read (no FFI, not root).
 *
 * @example
 * ```ts
 * import { shadowEntry } from "./accounts.ts"
 * console.log((await shadowEntry("root"))?.hash.slice(0, 3))
 * ```
 */
export const shadowEntry = async (name: string): Promise<ShadowEntry | undefined> => {
  const calls = shadowCalls()
  if (calls === null) return undefined
  const record = new Uint8Array(SPWD_SIZE)
  const buffer = new Uint8Array(BUFFER_SIZE)
  const result = new BigUint64Array(1)
  const status = await calls.getspnam_r(
    encoder.encode(name + "\0"),
    record,
    buffer,
    BigInt(buffer.length),
    new Uint8Array(result.buffer),
  )
  if (status !== 0 || result[0] === 0n) return undefined
  const view = new DataView(record.buffer)
  const expire = Number(view.getBigInt64(56, true))
  return {
    hash: cString(Deno.UnsafePointer.create(view.getBigUint64(8, true))),
    expireDay: expire > 0 ? expire : undefined,
  }
}

/**
 * The login shells the system lists (`getusershell`: `/etc/shells`), or `null` without FFI.
 *
 * @example
 * ```ts
 * import { validShells } from "./accounts.ts"
 * console.log(validShells()?.has("/bin/sh"))
 * ```
 */
export const validShells = (): Set<string> | null => {
  const calls = shadowCalls()
  if (calls === null) return null
  const shells = new Set<string>()
  calls.setusershell()
  try {
    for (let shell = calls.getusershell(); shell !== null; shell = calls.getusershell()) shells.add(cString(shell))
  } finally {
    calls.endusershell()
  }
  return shells
}
