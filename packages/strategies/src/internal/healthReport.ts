// HealthAware's report side (see `HealthAware.ts`): what an outcome does to the records, and the
// free probes that test half-open keys before any paid request.
import type * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Key from "@or-balancer/core/Key"
import type * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import type * as StateStore from "@or-balancer/core/StateStore"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import type { Record } from "../HealthAware.js"
import type * as HealthShare from "../HealthShare.js"
import { ns, type Store } from "./common.js"
import * as Fleet from "./healthFleet.js"
import * as Steps from "./healthSteps.js"
import { endTesting, isDue, type Step, waitOf } from "./healthSteps.js"

/** What one decorator's reports need. */
export interface Context {
  readonly store: StateStore.Service
  readonly st: Store
  readonly pool: KeyPool.Service
  readonly clock: Clock.Clock
  readonly share: HealthShare.Service | undefined
  readonly steps: ReturnType<typeof Steps.make>
}

export const make = ({ clock, pool, share, st, steps, store }: Context) => {
  const { accountWide, failed } = steps

  // With a fleet: a step that takes the key out (or further out) is published to it.
  const publishing = (keyId: string, step: Step, now: number, cooldown: boolean): Step =>
    share === undefined ? step : Fleet.publishing(share, keyId, step, now, cooldown)

  /** A key's outcome: `undefined` for a success; each a plain function over a store with synchronous forms. */
  const record = (key: Key.Key, error: UpstreamError.UpstreamError | undefined): KeySelector.Reported => {
    // A success needs no clock: it clears the record.
    if (error === undefined) return st.set(ns.health, key.id, undefined)
    if (!UpstreamError.countsAgainstKey(error)) return st.update<Record>(ns.health, key.id, endTesting)
    const now = clock.unsafeCurrentTimeMillis()
    const cooldown = waitOf(error) !== undefined
    const self = st.update<Record>(ns.health, key.id, publishing(key.id, failed(error, now), now, cooldown))
    const cool0 = accountWide(key, error, now)
    const cool =
      cool0 === undefined
        ? undefined
        : { covers: cool0.covers, step: (k: Key.Key) => publishing(k.id, cool0.step, now, true) }
    if (cool === undefined) return self
    // The whole account is out: the fleet takes out every key of it, this one included.
    if (share !== undefined) Fleet.publishAccount(share, key.account!, cool0!.step, now)
    const get = pool.unsafeGet
    if (get === undefined) {
      return Effect.zipRight(
        Effect.isEffect(self) ? self : Effect.void,
        Effect.flatMap(pool.get, (keys) =>
          Effect.forEach(
            keys.filter(cool.covers),
            (k) => store.modify<Record, void>(ns.health, k.id, cool.step(k)),
            {
              discard: true
            }
          )
        )
      )
    }
    let out = self
    for (const k of get()) {
      if (cool.covers(k))
        out = KeySelector.andReport(out, () => st.update<Record>(ns.health, k.id, cool.step(k)))
    }
    return out
  }

  // Free probes for keys whose cooldown ended: one per key at a time, before any paid request.
  const probe = (
    service: CreditLookup.Service,
    keys: ReadonlyArray<Key.Key>,
    records: ReadonlyMap<string, Record>,
    now: number
  ): Effect.Effect<void> =>
    Effect.forEach(
      keys.filter((k) => isDue(records.get(k.id), now)),
      (k) =>
        Effect.flatMap(
          store.modify<Record, boolean>(ns.health, k.id, (r) =>
            r === undefined || r.testing === true ? [false, r] : [true, { ...r, testing: true }]
          ),
          (claimed) =>
            claimed
              ? Effect.flatMap(Effect.either(service.lookup(k)), (result) =>
                  Effect.suspend(() => {
                    const done = record(
                      k,
                      result._tag === "Right"
                        ? Steps.probeVerdict(result.right, clock.unsafeCurrentTimeMillis())
                        : result.left
                    )
                    return Effect.isEffect(done) ? done : Effect.void
                  })
                )
              : Effect.void
        ),
      { concurrency: "unbounded", discard: true }
    )

  return { record, probe }
}
