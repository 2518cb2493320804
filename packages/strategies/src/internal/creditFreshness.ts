// How fresh each key's cached `GET /key` answer is (see `creditLedger.ts`): when it expires, when
// it is looked up again ahead of that, and which keys a selection must look up before it decides.
import type * as Key from "@or-balancer/core/Key"

export class Freshness {
  /** When each key's cached answer expires, for `refreshAt` hints. */
  readonly expiry = new Map<string, number>()
  // Until when the cache surely holds an answer for this key (it counts its TTL from the end of
  // the lookup, this from the start): selections skip the cache until then. Per key object, as
  // the cache is.
  private readonly fresh = new WeakMap<Key.Key, number>()
  // From when a key's good answer is looked up again in the background while still trusted, so
  // selections stay synchronous across its expiry (absent: no refresh ahead, as after a failure).
  private readonly ahead = new WeakMap<Key.Key, number>()
  private readonly refreshing = new WeakSet<Key.Key>()
  // Every key of `scanned` is fresh until `scannedUntil`: while the pool and that bound hold,
  // a selection needs no per-key check at all.
  private scanned: ReadonlyArray<Key.Key> | undefined
  private scannedUntil = 0

  /**
   * `refreshAhead`: looks a key up again off the selection path (the cache serves the old answer
   * meanwhile); `done` is called when that lookup ends, whatever its outcome.
   */
  constructor(private readonly refreshAhead: (key: Key.Key, done: () => void) => void) {}

  trust(key: Key.Key, until: number, refreshFrom: number = until): void {
    this.fresh.set(key, until)
    if (refreshFrom < until) this.ahead.set(key, refreshFrom)
    else this.ahead.delete(key)
    if (refreshFrom < this.scannedUntil) this.scannedUntil = refreshFrom
  }

  /** Forgets what is known of a key, so the next selection looks it up. */
  forget(key: Key.Key): void {
    this.fresh.delete(key)
    this.ahead.delete(key)
    this.scannedUntil = 0
  }

  /**
   * The keys `include` admits whose cached answer may have expired at `now` (undefined: none).
   * Keys still trusted but due soon are looked up in the background (single flight per key), so
   * no selection waits for them at expiry.
   */
  staleOf(
    keys: ReadonlyArray<Key.Key>,
    include: (key: Key.Key) => boolean,
    now: number
  ): Array<Key.Key> | undefined {
    if (keys === this.scanned && now < this.scannedUntil) return undefined
    let stale: Array<Key.Key> | undefined
    let until = Infinity
    for (const k of keys) {
      const u = this.fresh.get(k) ?? 0
      const a = Math.min(this.ahead.get(k) ?? u, u)
      if (now < a) {
        if (a < until) until = a
        continue
      }
      if (u < until) until = u
      if (!include(k)) continue
      if (now >= u) (stale ??= []).push(k)
      else if (!this.refreshing.has(k)) {
        this.refreshing.add(k)
        this.refreshAhead(k, () => this.refreshing.delete(k))
      }
    }
    this.scanned = keys
    this.scannedUntil = until
    return stale
  }
}
