import { Balancer, Key, KeyPool, KeySelector, Monitor, StateStore, UpstreamError } from "@or-balancer/core"
import { Clock, Duration, Effect, Layer, Redacted, Ref } from "effect"

export const secretOf = (id: string) => `sk-or-v1-${id.padEnd(8, "0")}${"f".repeat(56)}`

export const rateLimited = (seconds: number, scope: "key" | "account" = "key") =>
  new UpstreamError.RateLimited({ message: "slow down", scope, retryAfter: Duration.seconds(seconds) })
export const serverError = new UpstreamError.ServerError({ message: "boom", status: 500 })

export const keys = (ids: ReadonlyArray<string>, extra: Partial<Record<string, { account: string }>> = {}) =>
  ids.map((id) => Key.make({ id, secret: Redacted.make(secretOf(id)), account: extra[id]?.account }))

/**
 * A test strategy in pool order: the first candidate. Tracks open leases and reports, so tests can
 * check that leases are released and outcomes recorded.
 */
export class Probe extends Effect.Service<Probe>()("test/Probe", {
  effect: Effect.gen(function* () {
    const open = yield* Ref.make(0)
    const reports = yield* Ref.make<Array<{ key: string; outcome: KeySelector.Outcome }>>([])
    return { open, reports }
  })
}) {}

export const FirstCandidate = Layer.effect(
  KeySelector.KeySelector,
  Effect.gen(function* () {
    const pool = yield* KeyPool.KeyPool
    const probe = yield* Probe
    return KeySelector.make((request) =>
      Effect.gen(function* () {
        const ks = yield* pool.get
        const c = KeySelector.candidates(request, ks)
        if (c.length === 0)
          return yield* Effect.fail(KeySelector.explain(request, ks, yield* Clock.currentTimeMillis))
        const key = c[0]!
        yield* Ref.update(probe.open, (n) => n + 1)
        // The report gives the lease back: `open` counts leases not yet reported.
        return KeySelector.lease(key, (outcome) =>
          Effect.zipRight(
            Ref.update(probe.open, (n) => n - 1),
            Ref.update(probe.reports, (r) => [...r, { key: key.id, outcome }])
          )
        )
      })
    )
  })
)

export const env = (ks: ReadonlyArray<Key.Key>, options?: Balancer.Options) =>
  Balancer.layer(options).pipe(
    Layer.provideMerge(FirstCandidate),
    Layer.provideMerge(
      Layer.mergeAll(KeyPool.layer(ks), Monitor.layer, StateStore.layerMemory, Probe.Default)
    )
  )
