// A tournament tree over an array of values: the position of the highest (ties: the lowest
// position) in O(1), kept in O(log n) per changed value, and the best position a test admits,
// searched best first, so a big pool's richest admitted key is found without a pass over it.

export class MaxTree {
  private readonly leaves: number
  /** Node → the best position under it (-1: none); node 1 is the root, leaves from `leaves`. */
  private readonly best: Int32Array
  // The best-first search's queue of nodes, reused.
  private queue: Int32Array = new Int32Array(16)

  constructor(readonly values: Float64Array) {
    let leaves = 1
    while (leaves < values.length) leaves *= 2
    this.leaves = leaves
    this.best = new Int32Array(2 * leaves).fill(-1)
    for (let i = 0; i < values.length; i++) this.best[leaves + i] = i
    for (let node = leaves - 1; node >= 1; node--) this.best[node] = this.winner(node)
  }

  /** Is position `a` before `b` (higher value, or equal and earlier)? -1 is after everything. */
  private before(a: number, b: number): boolean {
    if (a < 0) return false
    if (b < 0) return true
    const x = this.values[a]!
    const y = this.values[b]!
    return x > y || (x === y && a < b)
  }

  private winner(node: number): number {
    const l = this.best[2 * node]!
    const r = this.best[2 * node + 1]!
    return this.before(r, l) ? r : l
  }

  /** The value at position `i` changed. */
  update(i: number): void {
    for (let node = (this.leaves + i) >> 1; node >= 1; node >>= 1) this.best[node] = this.winner(node)
  }

  /**
   * The best position whose value is at least `min` and whose item `admit` accepts (-1: none). The
   * leader first (nearly always admitted); past a refused one, the subtrees in order of their
   * best, so each refusal costs O(log n).
   */
  bestWhere<A>(min: number, items: ReadonlyArray<A>, admit: (item: A) => boolean): number {
    const top = this.best[1]!
    if (top < 0 || !(this.values[top]! >= min)) return -1
    if (admit(items[top]!)) return top
    let q = this.queue
    let size = 0
    const push = (node: number) => {
      if (size === q.length) {
        const bigger = new Int32Array(q.length * 2)
        bigger.set(q)
        this.queue = q = bigger
      }
      // Sift up by the subtrees' best.
      let s = size++
      while (s > 0) {
        const p = (s - 1) >> 1
        if (!this.before(this.best[node]!, this.best[q[p]!]!)) break
        q[s] = q[p]!
        s = p
      }
      q[s] = node
    }
    const pop = (): number => {
      const out = q[0]!
      const last = q[--size]!
      let s = 0
      for (;;) {
        const l = 2 * s + 1
        if (l >= size) break
        const r = l + 1
        const c = r < size && this.before(this.best[q[r]!]!, this.best[q[l]!]!) ? r : l
        if (!this.before(this.best[q[c]!]!, this.best[last]!)) break
        q[s] = q[c]!
        s = c
      }
      if (size > 0) q[s] = last
      return out
    }
    // Below the root, every subtree beside the path to the refused leader.
    const leaf = this.leaves + top
    for (let node = leaf; node > 1; node >>= 1) if (this.best[node ^ 1]! >= 0) push(node ^ 1)
    while (size > 0) {
      const node = pop()
      const i = this.best[node]!
      if (!(this.values[i]! >= min)) return -1
      if (node >= this.leaves) {
        if (admit(items[i]!)) return i
        continue
      }
      // The subtree's best is refused or not yet asked: its leaf path is walked down, each
      // sibling on the way queued.
      let n = node
      while (n < this.leaves) {
        const l = 2 * n
        const child = this.best[l] === i ? l : l + 1
        const other = child ^ 1
        if (this.best[other]! >= 0) push(other)
        n = child
      }
      if (admit(items[i]!)) return i
    }
    return -1
  }
}
