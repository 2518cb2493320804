/**
 * Round robin: each key in turn, skipping keys the request's gate refuses or that already failed
 * it. The cursor lives in the `StateStore` (namespace `or-balancer/round-robin`, id `name`), so
 * replicas sharing a store share the rotation. A skipped key does not skew the others: the
 * cursor moves past the key actually chosen.
 *
 * @since 0.1.0
 */
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ns, onlyPosition, storedSelector } from "./internal/common.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** The cursor's id in the store; give each round robin of one program its own. Default "default". */
  readonly name?: string | undefined
}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<KeySelector.Service, never, KeyPool.KeyPool | StateStore.StateStore> =>
  Effect.gen(function* () {
    const pool = yield* KeyPool.KeyPool
    const store = yield* StateStore.StateStore
    const id = options.name ?? "default"
    return storedSelector<number>(
      pool,
      store,
      yield* Effect.clock,
      ns.cursor,
      id,
      (request, keys, cursor) => {
        const n = keys.length
        // Kept to one key: that key, with no scan; the cursor moves past it as it would.
        if (request.only !== undefined) {
          const i = onlyPosition(request, keys)
          return i < 0 ? [undefined, cursor] : [keys[i]!, (i + 1) % n]
        }
        const start = n === 0 ? 0 : (cursor ?? 0) % n
        for (let i = 0; i < n; i++) {
          const j = (start + i) % n
          const k = keys[j]!
          if (KeySelector.isCandidate(request, k)) return [k, (j + 1) % n]
        }
        return [undefined, cursor]
      }
    )
  })

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer = (
  options?: Options
): Layer.Layer<KeySelector.KeySelector, never, KeyPool.KeyPool | StateStore.StateStore> =>
  Layer.effect(KeySelector.KeySelector, make(options))
