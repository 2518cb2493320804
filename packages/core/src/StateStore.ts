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
}

/**
 * @since 0.1.0
 * @category Context
 */
export class StateStore extends Context.Tag("@or-balancer/core/StateStore")<StateStore, Service>() {}

/**
 * An in-memory store for one process. Synchronous maps inside `Effect.sync`: each operation is
 * atomic because a fiber never yields inside it.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const makeMemory: Effect.Effect<Service> = Effect.sync(() => {
  const spaces = new Map<string, Space>()
  const space = (ns: string) => {
    let m = spaces.get(ns)
    if (m === undefined) {
      m = { map: new Map(), entries: undefined }
      spaces.set(ns, m)
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
  return StateStore.of({
    add: (ns, id, delta) =>
      Effect.sync(() => {
        const m = space(ns)
        const next = ((m.map.get(id) as number | undefined) ?? 0) + delta
        put(m, id, next)
        return next
      }),
    get: <A>(ns: string, id: string) => Effect.sync(() => space(ns).map.get(id) as A | undefined),
    set: (ns, id, value) => Effect.sync(() => put(space(ns), id, value)),
    modify: <A, B>(ns: string, id: string, f: (current: A | undefined) => readonly [B, A | undefined]) =>
      Effect.sync(() => {
        const m = space(ns)
        const [b, next] = f(m.map.get(id) as A | undefined)
        put(m, id, next)
        return b
      }),
    entries: <A>(ns: string) =>
      Effect.sync(() => {
        const m = space(ns)
        return (m.entries ??= m.map.size === 0 ? EMPTY : Array.from(m.map)) as ReadonlyArray<
          readonly [string, A]
        >
      })
  })
})

interface Space {
  readonly map: Map<string, unknown>
  entries: ReadonlyArray<readonly [string, unknown]> | undefined
}

const EMPTY: ReadonlyArray<readonly [string, unknown]> = []

/**
 * @since 0.1.0
 * @category Layers
 */
export const layerMemory: Layer.Layer<StateStore> = Layer.effect(StateStore, makeMemory)
