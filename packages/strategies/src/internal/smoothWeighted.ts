// Smooth weighted round robin (see `Weighted.ts`) without touching every key on every pick.
//
// nginx's round adds each candidate's weight to its running total, picks the highest total (ties:
// first in pool order) and takes the candidates' weight sum off it. Kept lazily, a key's total is
// `base + rounds × weight`: a round where every key takes part is `rounds + 1` and one change of
// the winner's base. Keys of one weight keep their order between rounds (their totals grow alike),
// so a heap per distinct weight holds its leader, and a pick compares one leader per weight:
// O(weights + log n) instead of O(n). A round with a gate (or keys already tried) must ask every
// key anyway; it updates the bases of the keys left out, so they neither gain nor lose, exactly
// as nginx's round does. Same picks, same totals, as the plain algorithm (integer weights keep
// the arithmetic exact).
import type * as Key from "@or-balancer/core/Key"
import * as KeySelector from "@or-balancer/core/KeySelector"
import { admitsAll, onlyPosition } from "./common.js"

/**
 * The stored state, plain data (a shared store can serialise it). Key `id`'s running total is
 * `bases[id] + rounds × weights[id]`; a key without a weight (no longer in the pool) keeps its
 * total frozen at `bases[id]`.
 */
export interface Totals {
  rounds: number
  readonly bases: Record<string, number>
  weights: Record<string, number>
}

/** The running total of `id` in `t`. */
export const totalOf = (t: Totals, id: string): number => (t.bases[id] ?? 0) + t.rounds * (t.weights[id] ?? 0)

const isTotals = (u: unknown): u is Totals =>
  typeof u === "object" &&
  u !== null &&
  typeof (u as Totals).rounds === "number" &&
  typeof (u as Totals).bases === "object" &&
  typeof (u as Totals).weights === "object"

// Past this, the bases are folded back (rounds to 0) so `base + rounds × weight` stays exact.
const FOLD_AT = 2 ** 40

/** Folds the rounds into the bases under `pool`'s weights: every total as it is, rounds 0. */
const fold = (t: Totals, keys: ReadonlyArray<Key.Key>): void => {
  const weights: Record<string, number> = Object.create(null)
  for (const id in t.weights) t.bases[id] = totalOf(t, id)
  for (const k of keys) weights[k.id] = k.weight
  t.rounds = 0
  t.weights = weights
}

/** Do the stored weights say exactly the pool's keys and weights? */
const weightsMatch = (t: Totals, keys: ReadonlyArray<Key.Key>): boolean => {
  let n = 0
  for (const id in t.weights) {
    void id
    n++
  }
  if (n !== keys.length) return false
  for (const k of keys) if (t.weights[k.id] !== k.weight) return false
  return true
}

/**
 * Per pool and stored record: each key's base and weight by pool position, and one heap of
 * positions per distinct weight (highest base first; ties: first in pool order). Hangs off the
 * record, so selectors sharing a record share it; a store that hands back a fresh record on
 * every read simply gets a fresh index.
 */
class Index {
  readonly n: number
  readonly base: Float64Array
  readonly weight: Float64Array
  /** Position → its slot in its weight's heap. */
  readonly slot: Int32Array
  /** Position → its weight's heap. */
  readonly heapOf: Array<Int32Array>
  readonly heaps: Array<Int32Array>
  readonly heapWeight: Float64Array
  readonly sum: number
  readonly maxWeight: number
  left: Uint8Array | undefined

  constructor(
    readonly keys: ReadonlyArray<Key.Key>,
    readonly totals: Totals
  ) {
    const n = keys.length
    this.n = n
    this.base = new Float64Array(n)
    this.weight = new Float64Array(n)
    this.slot = new Int32Array(n)
    const byWeight = new Map<number, Array<number>>()
    let sum = 0
    let maxWeight = 0
    for (let i = 0; i < n; i++) {
      const k = keys[i]!
      this.base[i] = totals.bases[k.id] ?? 0
      this.weight[i] = k.weight
      sum += k.weight
      if (k.weight > maxWeight) maxWeight = k.weight
      let members = byWeight.get(k.weight)
      if (members === undefined) byWeight.set(k.weight, (members = []))
      members.push(i)
    }
    this.sum = sum
    this.maxWeight = maxWeight
    this.heaps = []
    this.heapWeight = new Float64Array(byWeight.size)
    this.heapOf = new Array(n)
    for (const [w, members] of byWeight) {
      this.heapWeight[this.heaps.length] = w
      const heap = Int32Array.from(members)
      this.heaps.push(heap)
      for (const i of members) this.heapOf[i] = heap
    }
    for (const heap of this.heaps) this.heapify(heap)
  }

  private before(a: number, b: number): boolean {
    const x = this.base[a]!
    const y = this.base[b]!
    return x > y || (x === y && a < b)
  }

  heapify(heap: Int32Array): void {
    for (let s = (heap.length >> 1) - 1; s >= 0; s--) this.down(heap, s)
    for (let s = 0; s < heap.length; s++) this.slot[heap[s]!] = s
  }

  /** Moves the position at slot `s` down its heap (its base went down). */
  down(heap: Int32Array, s: number): void {
    const n = heap.length
    const i = heap[s]!
    for (;;) {
      const l = 2 * s + 1
      if (l >= n) break
      const r = l + 1
      const c = r < n && this.before(heap[r]!, heap[l]!) ? r : l
      if (!this.before(heap[c]!, i)) break
      heap[s] = heap[c]!
      this.slot[heap[s]!] = s
      s = c
    }
    heap[s] = i
    this.slot[i] = s
  }

  /** Lowers position `i`'s base by `by`, in the index and the stored record. */
  lower(i: number, by: number): void {
    const b = this.base[i]! - by
    this.base[i] = b
    this.totals.bases[this.keys[i]!.id] = b
  }
}

const indexes = new WeakMap<Totals, Index>()

/** The index of `t` over `keys`, built (the record brought to the pool's keys and weights) when missing. */
const indexOf = (t: Totals, keys: ReadonlyArray<Key.Key>): Index => {
  let index = indexes.get(t)
  if (index === undefined || index.keys !== keys || t.rounds * index.maxWeight > FOLD_AT) {
    // A pool of other keys or weights (or rounds grown large): every total as it is, rounds 0.
    if (!weightsMatch(t, keys) || (index !== undefined && t.rounds * index.maxWeight > FOLD_AT)) fold(t, keys)
    index = new Index(keys, t)
    indexes.set(t, index)
  }
  return index
}

/** The state as stored, in this form: the plain totals of before are taken as bases. */
export const totalsOf = (current: unknown): Totals => {
  if (isTotals(current)) return current
  const bases: Record<string, number> = Object.create(null)
  if (typeof current === "object" && current !== null)
    for (const [id, v] of Object.entries(current)) if (typeof v === "number") bases[id] = v
  return { rounds: 0, bases, weights: Object.create(null) }
}

/**
 * One round: the key chosen among the request's candidates (undefined: none), the totals changed
 * in place. A request kept to one key (`only`) changes nothing: that key gains and loses its own
 * weight.
 */
export const pick = (
  t: Totals,
  request: KeySelector.SelectRequest,
  keys: ReadonlyArray<Key.Key>
): Key.Key | undefined => {
  // Kept to one key: a round of one candidate gains and loses its own weight; no scan.
  if (request.only !== undefined) {
    const i = onlyPosition(request, keys)
    return i < 0 ? undefined : keys[i]
  }
  if (keys.length === 0) return undefined
  const ix = indexOf(t, keys)
  const rounds = t.rounds + 1
  if (!admitsAll(request)) return gatedRound(ix, t, request, keys, rounds)
  // Every key takes part: the best of the weights' leaders.
  let best = -1
  let bestValue = -Infinity
  const heaps = ix.heaps
  for (let h = 0; h < heaps.length; h++) {
    const top = heaps[h]![0]!
    const v = ix.base[top]! + rounds * ix.heapWeight[h]!
    if (v > bestValue || (v === bestValue && top < best)) {
      best = top
      bestValue = v
    }
  }
  t.rounds = rounds
  ix.lower(best, ix.sum)
  ix.down(ix.heapOf[best]!, 0)
  return keys[best]
}

/** A round some keys sit out: each is asked; the ones left out keep their totals. */
const gatedRound = (
  ix: Index,
  t: Totals,
  request: KeySelector.SelectRequest,
  keys: ReadonlyArray<Key.Key>,
  rounds: number
): Key.Key | undefined => {
  const n = ix.n
  const left = (ix.left ??= new Uint8Array(n))
  let out = 0
  let sum = 0
  let best = -1
  let bestValue = -Infinity
  for (let i = 0; i < n; i++) {
    if (!KeySelector.isCandidate(request, keys[i]!)) {
      left[i] = 1
      out++
      continue
    }
    left[i] = 0
    const w = ix.weight[i]!
    sum += w
    const v = ix.base[i]! + rounds * w
    if (v > bestValue) {
      best = i
      bestValue = v
    }
  }
  if (best < 0) return undefined
  t.rounds = rounds
  // Few left out: fix each in its heap; many: rebuild the heaps once.
  const each = out * Math.log2(n + 1) < n
  for (let i = 0; i < n && out > 0; i++) {
    if (left[i] === 0) continue
    out--
    ix.lower(i, ix.weight[i]!)
    if (each) ix.down(ix.heapOf[i]!, ix.slot[i]!)
  }
  ix.lower(best, sum)
  if (each) ix.down(ix.heapOf[best]!, ix.slot[best]!)
  else for (const heap of ix.heaps) ix.heapify(heap)
  return keys[best]
}
