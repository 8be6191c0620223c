/**
 * Comparing a given password with a stored plain one in constant time (the authorizers that keep
 * passwords in memory: `DummyAuthorizer`, `UnixAuthorizer`'s overridden users).
 *
 * @module
 */

const encoder = new TextEncoder()

/**
 * Both passwords are compared over at least this many bytes (zero-padded), so the time taken
 * depends only on the longer of the two lengths when that exceeds it: a control line is at most
 * 2048 bytes by default, so in practice the time is constant.
 */
const COMPARE_BYTES = 2048

/**
 * Compare passwords in constant time: every byte of both (padded to the same length) is looked
 * at, with no early exit, so neither the first difference nor the stored length leaks. Synchronous:
 * a digest through `crypto.subtle` cost more than the rest of a login.
 */
export const samePassword = (given: string, stored: string): boolean => {
  const a = encoder.encode(given)
  const b = encoder.encode(stored)
  const length = Math.max(COMPARE_BYTES, a.length, b.length)
  const x = new Uint8Array(length)
  const y = new Uint8Array(length)
  x.set(a)
  y.set(b)
  let diff = a.length ^ b.length
  for (let i = 0; i < length; i++) diff |= x[i] ^ y[i]
  return diff === 0
}
