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

/** Reused by every comparison (they are synchronous): a login allocates nothing here. */
const given = new Uint8Array(COMPARE_BYTES)
const stored = new Uint8Array(COMPARE_BYTES)

/** Encode `text` into `bytes` (zero, and big enough: see {@link samePassword}); its length in bytes. */
const encodePadded = (text: string, bytes: Uint8Array): number => encoder.encodeInto(text, bytes).written

/**
 * Compare passwords in constant time: every byte of both (padded to the same length) is looked
 * at, with no early exit, so neither the first difference nor the stored length leaks.
 * Synchronous: a digest through `crypto.subtle` cost more than the rest of a login. The padded
 * copies live in two buffers made once: allocating and zeroing 4 KiB per login was most of its cost.
 */
export const samePassword = (givenText: string, storedText: string): boolean => {
  // UTF-8 takes at most 3 bytes per UTF-16 code unit, so both fit in `longest` bytes.
  const longest = 3 * Math.max(givenText.length, storedText.length)
  const a = longest <= COMPARE_BYTES ? given : new Uint8Array(longest)
  const b = longest <= COMPARE_BYTES ? stored : new Uint8Array(longest)
  const aLength = encodePadded(givenText, a)
  const bLength = encodePadded(storedText, b)
  let diff = aLength ^ bLength
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i]
  // No password stays in the shared buffers.
  a.fill(0, 0, aLength)
  b.fill(0, 0, bLength)
  return diff === 0
}
