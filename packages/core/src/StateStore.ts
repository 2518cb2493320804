/**
 * State that several balancer replicas would have to share: round-robin cursors, health and
 * cooldowns, the credit ledger, in-flight counts. Strategies keep such state here, not in their
 * own `Ref`s, so a shared store (Redis, say) can replace the in-memory one without touching them.
 *
 * Values are plain JSON data, so any store can hold them. Every operation is atomic per entry.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** Adds `delta` to a number (missing counts as 0) and returns the new value. */
  readonly add: (namespace: string, id: string, delta: number) => Effect.Effect<number>
  readonly get: <A>(namespace: string, id: string) => Effect.Effect<A | undefined>
  readonly set: <A>(namespace: string, id: string, value: A | undefined) => Effect.Effect<void>
  /** Atomically reads and replaces one entry; `undefined` deletes it. */
  readonly modify: <A, B>(
    namespace: string,
    id: string,
    f: (current: A | undefined) => readonly [B, A | undefined]
  ) => Effect.Effect<B>
  readonly entries: <A>(namespace: string) => Effect.Effect<ReadonlyArray<readonly [string, A]>>
  /**
   * The same operations, synchronous: only a store that holds its state in this process (the
   * memory store) has them. Strategies decide on them synchronously (`KeySelector.decide`, the
   * fiber-free path the gateway runs most requests on); over a store without them, each read is a
   * `KeySelector.Wait` and each report answers an Effect.
   */
  readonly unsafe?: Unsafe | undefined
}

/**
 * Synchronous access to a store in this process. Each operation is atomic as JavaScript runs it.
 *
 * @since 0.2.0
 * @category Models
 */
export interface Unsafe {
  readonly add: (namespace: string, id: string, delta: number) => number
  readonly get: <A>(namespace: string, id: string) => A | undefined
  readonly set: <A>(namespace: string, id: string, value: A | undefined) => void
  readonly modify: <A, B>(
    namespace: string,
    id: string,
    f: (current: A | undefined) => readonly [B, A | undefined]
  ) => B
  readonly entries: <A>(namespace: string) => ReadonlyArray<readonly [string, A]>
}

/**
 * @since 0.1.0
 * @category Context
 */
export class StateStore extends Context.Tag("@or-balancer/core/StateStore")<StateStore, Service>() {}

/**
 * An in-memory store for one process. Synchronous maps: each operation is atomic because a fiber
 * never yields inside it, and the store offers them synchronously too (`unsafe`).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const makeMemory: Effect.Effect<Service> = Effect.sync(() => {
  // The first namespaces (one per strategy's kind of state) are found by a short scan: their
  // names are the same string constants on every call, so `===` matches at once, cheaper than
  // hashing the name on each of the several store operations a decision makes. Any past them
  // (a program's own) are in a Map.
  const names: Array<string> = []
  const spaces: Array<Space> = []
  const more = new Map<string, Space>()
  const space = (ns: string) => {
    for (let i = 0; i < names.length; i++) if (names[i] === ns) return spaces[i]!
    let m = more.get(ns)
    if (m === undefined) {
      m = { map: new Map(), entries: undefined }
      if (names.length < SCANNED) {
        names.push(ns)
        spaces.push(m)
      } else more.set(ns, m)
    }
    return m
  }
  // `entries` is read on every selection (cooldowns, health) and written rarely: its array is
  // kept until the namespace changes.
  const put = (m: Space, id: string, value: unknown) => {
    if (value === undefined) {
      if (m.map.delete(id)) m.entries = undefined
    } else {
      m.map.set(id, value)
      m.entries = undefined
    }
  }
  const unsafe: Unsafe = {
    add: (ns, id, delta) => {
      const m = space(ns)
      const next = ((m.map.get(id) as number | undefined) ?? 0) + delta
      put(m, id, next)
      return next
    },
    get: <A>(ns: string, id: string) => space(ns).map.get(id) as A | undefined,
    set: (ns, id, value) => put(space(ns), id, value),
    modify: <A, B>(ns: string, id: string, f: (current: A | undefined) => readonly [B, A | undefined]) => {
      const m = space(ns)
      const current = m.map.get(id) as A | undefined
      const [b, next] = f(current)
      // A value changed in place (the credit ledger, weighted totals) is already stored: no write,
      // and the namespace's entries array still holds it.
      if (next !== current) put(m, id, next)
      return b
    },
    entries: <A>(ns: string) => {
      const m = space(ns)
      return (m.entries ??= m.map.size === 0 ? EMPTY : Array.from(m.map)) as ReadonlyArray<
        readonly [string, A]
      >
    }
  }
  return StateStore.of({
    add: (ns, id, delta) => Effect.sync(() => unsafe.add(ns, id, delta)),
    get: (ns, id) => Effect.sync(() => unsafe.get(ns, id)),
    set: (ns, id, value) => Effect.sync(() => unsafe.set(ns, id, value)),
    modify: (ns, id, f) => Effect.sync(() => unsafe.modify(ns, id, f)),
    entries: (ns) => Effect.sync(() => unsafe.entries(ns)),
    unsafe
  })
})

interface Space {
  readonly map: Map<string, unknown>
  entries: ReadonlyArray<readonly [string, unknown]> | undefined
}

const EMPTY: ReadonlyArray<readonly [string, unknown]> = []

/** Namespaces found by a scan rather than a Map lookup (see `makeMemory`). */
const SCANNED = 16

/**
 * @since 0.1.0
 * @category Layers
 */
export const layerMemory: Layer.Layer<StateStore> = Layer.effect(StateStore, makeMemory)
