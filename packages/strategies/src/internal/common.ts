import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Key from "@or-balancer/core/Key"
import type * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import type * as StateStore from "@or-balancer/core/StateStore"

/** StateStore namespaces, one per kind of shared state. */
export const ns = {
  cursor: "or-balancer/round-robin",
  weighted: "or-balancer/weighted",
  inFlight: "or-balancer/in-flight",
  credit: "or-balancer/credit",
  threshold: "or-balancer/threshold",
  health: "or-balancer/health"
} as const

/** Fails the way every strategy fails when no key is a candidate. */
export const noKey = (
  request: KeySelector.SelectRequest,
  keys: ReadonlyArray<Key.Key>
): Effect.Effect<never, KeySelector.NoKeyAvailable> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.fail(KeySelector.explain(request, keys, now)))

// Leases of base strategies that learn nothing are immutable: share one per key, no per-select allocation.
const leases = new WeakMap<Key.Key, KeySelector.UnsafeLease>()

/** A report-nowhere lease for `key`, cached. */
export const plainLease = (key: Key.Key): KeySelector.UnsafeLease => {
  let l = leases.get(key)
  if (l === undefined) {
    l = KeySelector.unsafeLease(key)
    leases.set(key, l)
  }
  return l
}

/** A succeeded effect of the plain lease, cached too. */
const succeeded = new WeakMap<Key.Key, Effect.Effect<KeySelector.Lease>>()
export const succeedLease = (key: Key.Key): Effect.Effect<KeySelector.Lease> => {
  let e = succeeded.get(key)
  if (e === undefined) {
    e = Effect.succeed(plainLease(key))
    succeeded.set(key, e)
  }
  return e
}

/** A gate admitting only the key with this id. */
export const only =
  (id: string, reason: KeySelector.Reason = "ineligible"): KeySelector.Gate =>
  (k) =>
    k.id === id ? undefined : { reason }

/** 32-bit FNV-1a. */
export const fnv1a = (s: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** murmur3's finaliser: spreads every input bit over the output. */
export const fmix32 = (x: number): number => {
  let h = x >>> 0
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * `KeySelector.candidates`, without a copy when every key is one (no gate, nothing tried):
 * the common first attempt under no decorator.
 */
export const candidatesOf = (
  request: KeySelector.SelectRequest,
  keys: ReadonlyArray<Key.Key>
): ReadonlyArray<Key.Key> =>
  request.gate === undefined && request.tried.size === 0 ? keys : KeySelector.candidates(request, keys)

/**
 * A selector whose whole choice is one `StateStore.modify`: `step` picks a key (or none) from the
 * pool and returns the next state, so replicas sharing the store share the state.
 */
export const storedSelector = <S>(
  pool: KeyPool.Service,
  store: StateStore.Service,
  clock: Clock.Clock,
  namespace: string,
  id: string,
  step: (
    request: KeySelector.SelectRequest,
    keys: ReadonlyArray<Key.Key>,
    current: S | undefined
  ) => readonly [Key.Key | undefined, S | undefined]
): KeySelector.Service => {
  const sync = syncAccess(pool, store)
  return KeySelector.make(
    (request) =>
      Effect.flatMap(pool.get, (keys) =>
        Effect.flatMap(
          store.modify<S, Key.Key | undefined>(namespace, id, (current) => step(request, keys, current)),
          (key) => (key === undefined ? noKey(request, keys) : succeedLease(key))
        )
      ),
    sync === undefined
      ? undefined
      : (request) => {
          const keys = sync.keys()
          const key = sync.store.modify<S, Key.Key | undefined>(namespace, id, (current) =>
            step(request, keys, current)
          )
          return key === undefined
            ? KeySelector.explain(request, keys, clock.unsafeCurrentTimeMillis())
            : plainLease(key)
        }
  )
}

/** The pool's and store's synchronous forms, when both have them: `unsafeSelect` is built on them. */
export const syncAccess = (
  pool: KeyPool.Service,
  store: StateStore.Service
): { readonly keys: () => ReadonlyArray<Key.Key>; readonly store: StateStore.Unsafe } | undefined =>
  pool.unsafeGet === undefined || store.unsafe === undefined
    ? undefined
    : { keys: pool.unsafeGet, store: store.unsafe }

/**
 * A selector over the request's candidates: none fails, one is taken without asking `pick`, and
 * `pick` chooses among two or more.
 */
export const candidateSelector = (
  pool: KeyPool.Service,
  pick: (candidates: ReadonlyArray<Key.Key>) => Effect.Effect<KeySelector.Lease>
): KeySelector.Service =>
  KeySelector.make((request) =>
    Effect.flatMap(pool.get, (keys) => {
      const c = candidatesOf(request, keys)
      if (c.length === 0) return noKey(request, keys)
      if (c.length === 1) return succeedLease(c[0]!)
      return pick(c)
    })
  )
