import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as EffectRandom from "effect/Random"
import { PCGRandom } from "effect/Utils"
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

type Decision = KeySelector.Decision

// Leases of base strategies that learn nothing are immutable: share one per key, no per-decision allocation.
const leases = new WeakMap<Key.Key, KeySelector.Lease>()

/** A report-nowhere lease for `key`, cached. */
export const plainLease = (key: Key.Key): KeySelector.Lease => {
  let l = leases.get(key)
  if (l === undefined) {
    l = KeySelector.lease(key)
    leases.set(key, l)
  }
  return l
}

/**
 * The pool's keys, to continue the decision with: read synchronously when the pool can, else
 * through a `Wait` (a pool without a synchronous form).
 */
export const withKeys = (pool: KeyPool.Service, k: (keys: ReadonlyArray<Key.Key>) => Decision): Decision => {
  const get = pool.unsafeGet
  return get !== undefined ? k(get()) : KeySelector.waitFor(pool.get, k)
}

/**
 * A `StateStore` as a decision uses it: each read continues the decision synchronously over a
 * store with synchronous forms, or through a `Wait` over one without (a shared store); each write
 * (from a report) is done at once, or answered as the Effect to run.
 */
export interface Store {
  readonly modify: <A, B>(
    namespace: string,
    id: string,
    f: (current: A | undefined) => readonly [B, A | undefined],
    k: (b: B) => Decision
  ) => Decision
  readonly get: <A>(namespace: string, id: string, k: (a: A | undefined) => Decision) => Decision
  readonly entries: <A>(
    namespace: string,
    k: (entries: ReadonlyArray<readonly [string, A]>) => Decision
  ) => Decision
  readonly set: <A>(namespace: string, id: string, value: A | undefined) => KeySelector.Reported
  readonly update: <A>(
    namespace: string,
    id: string,
    f: (current: A | undefined) => readonly [void, A | undefined]
  ) => KeySelector.Reported
  readonly add: (namespace: string, id: string, delta: number) => KeySelector.Reported
}

export const storeOf = (store: StateStore.Service): Store => {
  const u = store.unsafe
  if (u !== undefined) {
    return {
      modify: (n, id, f, k) => k(u.modify(n, id, f)),
      get: (n, id, k) => k(u.get(n, id)),
      entries: (n, k) => k(u.entries(n)),
      set: (n, id, v) => u.set(n, id, v),
      update: (n, id, f) => u.modify(n, id, f),
      add: (n, id, d) => {
        u.add(n, id, d)
      }
    }
  }
  return {
    modify: (n, id, f, k) => KeySelector.waitFor(store.modify(n, id, f), k),
    get: <A>(n: string, id: string, k: (a: A | undefined) => Decision) =>
      KeySelector.waitFor(store.get<A>(n, id), k),
    entries: <A>(n: string, k: (entries: ReadonlyArray<readonly [string, A]>) => Decision) =>
      KeySelector.waitFor(store.entries<A>(n), k),
    set: (n, id, v) => store.set(n, id, v),
    update: (n, id, f) => store.modify(n, id, f),
    add: (n, id, d) => Effect.asVoid(store.add(n, id, d))
  }
}

/** The refusal every strategy gives when no key is a candidate, timed by the strategy's clock. */
export const noKey = (
  clock: Clock.Clock,
  request: KeySelector.SelectRequest,
  keys: ReadonlyArray<Key.Key>
): KeySelector.NoKeyAvailable => KeySelector.explain(request, keys, clock.unsafeCurrentTimeMillis())

/**
 * A pseudo-random generator for synchronous decisions, seeded once from Effect's `Random` when
 * the layer is built: pin `Random` (`Effect.withRandom(Random.make(seed))` around the layer's
 * construction) and the choices are the same on every run.
 */
export const seededPrng: Effect.Effect<PCGRandom> = Effect.map(
  EffectRandom.nextInt,
  (seed) => new PCGRandom(seed)
)

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

// Each pool array's positions by key id, built once per array (a pool change is a new array).
const positions = new WeakMap<ReadonlyArray<Key.Key>, Map<string, number>>()

/** Where the key with this id is in `keys` (-1: not there), in O(1) after the first call per array. */
export const positionOf = (keys: ReadonlyArray<Key.Key>, id: string): number => {
  // The last array asked about (nearly always the pool's current one): no WeakMap lookup.
  let p = keys === lastKeys ? lastPositions : positions.get(keys)
  if (p === undefined) {
    p = new Map()
    for (let i = 0; i < keys.length; i++) if (!p.has(keys[i]!.id)) p.set(keys[i]!.id, i)
    positions.set(keys, p)
  }
  lastKeys = keys
  lastPositions = p
  return p.get(id) ?? -1
}
let lastKeys: ReadonlyArray<Key.Key> | undefined
let lastPositions: Map<string, number> | undefined

/** Every key is a candidate: no gate, nothing tried, not kept to one key. */
export const admitsAll = (request: KeySelector.SelectRequest): boolean =>
  request.gate === undefined && request.tried.size === 0 && request.only === undefined

/**
 * The position in `keys` of the one key the request is kept to (`only`), or -1 when it is no
 * candidate (or not in the pool): strategies take it without scanning the pool.
 */
export const onlyPosition = (request: KeySelector.SelectRequest, keys: ReadonlyArray<Key.Key>): number => {
  const only = request.only!
  const i = positionOf(keys, only.id)
  return i >= 0 && KeySelector.isCandidate(request, keys[i]!) ? i : -1
}

/**
 * `KeySelector.candidates`, without a copy when every key is one (no gate, nothing tried):
 * the common first attempt under no decorator; without a scan when the request is kept to one key.
 */
export const candidatesOf = (
  request: KeySelector.SelectRequest,
  keys: ReadonlyArray<Key.Key>
): ReadonlyArray<Key.Key> => {
  if (request.only !== undefined) {
    const i = onlyPosition(request, keys)
    return i < 0 ? [] : [keys[i]!]
  }
  return request.gate === undefined && request.tried.size === 0 ? keys : KeySelector.candidates(request, keys)
}

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
  const u = store.unsafe
  const get = pool.unsafeGet
  if (u !== undefined && get !== undefined) {
    // Both synchronous (nearly always): one store update whose step reads the request and keys
    // from here, so a decision allocates no closure. Nothing yields inside `modify`, so the two
    // are never a previous decision's.
    let request: KeySelector.SelectRequest
    let keys: ReadonlyArray<Key.Key>
    const stepNow = (current: S | undefined) => step(request, keys, current)
    return KeySelector.fromDecide((r) => {
      const ks = get()
      request = r
      keys = ks
      const key = u.modify<S, Key.Key | undefined>(namespace, id, stepNow)
      return key === undefined ? noKey(clock, r, ks) : plainLease(key)
    })
  }
  const st = storeOf(store)
  return KeySelector.fromDecide((request) =>
    withKeys(pool, (keys) =>
      st.modify<S, Key.Key | undefined>(
        namespace,
        id,
        (current) => step(request, keys, current),
        (key) => (key === undefined ? noKey(clock, request, keys) : plainLease(key))
      )
    )
  )
}

/**
 * A selector over the request's candidates: none is refused, one is taken without asking `pick`,
 * and `pick` chooses among two or more, synchronously.
 */
export const candidateSelector = (
  pool: KeyPool.Service,
  clock: Clock.Clock,
  pick: (candidates: ReadonlyArray<Key.Key>) => Key.Key
): KeySelector.Service =>
  KeySelector.fromDecide((request) =>
    withKeys(pool, (keys) => {
      const c = candidatesOf(request, keys)
      if (c.length === 0) return noKey(clock, request, keys)
      return plainLease(c.length === 1 ? c[0]! : pick(c))
    })
  )

/** Continues a decision after a write (`Store.set`...): at once, or after the write's Effect. */
export const afterWrite = (written: KeySelector.Reported, then: () => Decision): Decision =>
  KeySelector.isPending(written) ? KeySelector.waitFor(written, then) : then()

// The hot path's forms of `withKeys` and `Store.entries`: the continuation is a function of the
// layer taking `a` (the request, say) as an argument, so a synchronous decision allocates no closure.

/** {@link withKeys}, continuing with `k(a, keys)`. */
export const withKeysFor = <A>(
  pool: KeyPool.Service,
  a: A,
  k: (a: A, keys: ReadonlyArray<Key.Key>) => Decision
): Decision => {
  const get = pool.unsafeGet
  return get !== undefined ? k(a, get()) : KeySelector.waitFor(pool.get, (keys) => k(a, keys))
}

/** `Store.entries`, continuing with `k(a, entries)`. */
export const entriesFor = <A, E>(
  store: StateStore.Service,
  namespace: string,
  a: A,
  k: (a: A, entries: ReadonlyArray<readonly [string, E]>) => Decision
): Decision => {
  const u = store.unsafe
  return u !== undefined
    ? k(a, u.entries<E>(namespace))
    : KeySelector.waitFor(store.entries<E>(namespace), (entries) => k(a, entries))
}

/** `KeySelector.andThen`, continuing with `f(a, settled)`: no closure unless the decision waits. */
export const thenFor = <A>(
  decision: Decision,
  a: A,
  f: (a: A, settled: KeySelector.Lease | KeySelector.NoKeyAvailable) => Decision
): Decision => (KeySelector.isWait(decision) ? KeySelector.andThen(decision, (d) => f(a, d)) : f(a, decision))

/** `KeySelector.andReport(first, () => lease.unsafeReport(outcome))`, without the closure when `first` is done. */
export const thenReport = (
  first: KeySelector.Reported,
  lease: KeySelector.Lease,
  outcome: KeySelector.Outcome
): KeySelector.Reported =>
  KeySelector.isPending(first)
    ? KeySelector.andReport(first, () => lease.unsafeReport(outcome))
    : lease.unsafeReport(outcome)
