/**
 * The lock of the path jail: filesystem operations run side by side, a rename runs alone.
 *
 * @module
 */

/**
 * Many operations at once, or one rename alone. Waiting renames go first, so a stream of
 * operations can't starve them.
 */
export class RenameLock {
  private running = 0
  private renaming = false
  private readonly renames: Array<() => void> = []
  private readonly others: Array<() => void> = []

  async shared<A>(f: () => Promise<A>): Promise<A> {
    // A waiter is woken with its place already taken (see `next`).
    if (this.renaming || this.renames.length > 0) await new Promise<void>((resolve) => this.others.push(resolve))
    else this.running++
    try {
      return await f()
    } finally {
      this.running--
      this.next()
    }
  }

  async exclusive<A>(f: () => Promise<A>): Promise<A> {
    if (this.renaming || this.running > 0) await new Promise<void>((resolve) => this.renames.push(resolve))
    else this.renaming = true
    try {
      return await f()
    } finally {
      this.renaming = false
      this.next()
    }
  }

  private next(): void {
    if (this.renaming || this.running > 0) return
    const rename = this.renames.shift()
    if (rename !== undefined) {
      this.renaming = true
      return rename()
    }
    const others = this.others.splice(0)
    this.running += others.length
    for (const other of others) other()
  }
}
