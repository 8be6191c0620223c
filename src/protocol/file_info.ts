/**
 * What the protocol tells a client about a file: the facts that listings (LIST, MLSD, MLST, STAT)
 * are made of. Filesystems produce it; the listing formats read it.
 *
 * @module
 */

/** What a listing needs to know about one directory entry or file. */
export interface FileInfo {
  /** Base name (for `stat` of a path, its last component). */
  readonly name: string
  readonly kind: "file" | "directory" | "symlink" | "fifo" | "socket" | "blockDevice" | "charDevice" | "other"
  readonly size: number
  /** Last modification time, or `null` when the platform does not report it. */
  readonly mtime: Date | null
  /** Permission bits (`0o755`), or `null` when unknown. */
  readonly mode: number | null
  readonly nlink: number
  readonly uid: number | null
  readonly gid: number | null
  /** Device and inode, used for the MLSx `unique` fact. */
  readonly dev: number | null
  readonly ino: number | null
}
