/**
 * Sticky (a decorator): requests with the same affinity id (`session_id`, `prompt_cache_key`, a
 * user id) go to the same key, so prompt caches hit. The key is chosen by weighted rendezvous
 * hashing over the candidates: each key scores `-weight / ln(hash(affinity, key))` and the best
 * wins. The mapping needs no shared state, moves a session only when its key is ineligible
 * (then to its second-best key), and adding or removing a key moves only the sessions that
 * key wins or held (about 1/N of them).
 *
 * The inner selector is asked for exactly that key; if it refuses it, the request falls back to
 * the inner selector's own choice. Requests without affinity pass straight through. Placed above
 * `ConcurrencyLimited`, a session waits for its own key's permit rather than moving.
 *
 * @since 0.1.0
 */
import type * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { fmix32, fnv1a, withKeys } from "./internal/common.js"

const idHashes = new Map<string, number>()
const idHash = (id: string): number => {
  let h = idHashes.get(id)
  if (h === undefined) {
    h = fmix32(fnv1a(id) ^ 0x9e3779b9)
    if (idHashes.size > 10_000) idHashes.clear()
    idHashes.set(id, h)
  }
  return h
}

/**
 * The rendezvous score of a key for an affinity hash (higher wins).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const score = (affinityHash: number, key: Key.Key): number => {
  const h = fmix32(Math.imul(affinityHash ^ idHash(key.id), 0x27d4eb2d) ^ affinityHash)
  const u = (h + 0.5) / 4294967296
  return -key.weight / Math.log(u)
}

/**
 * The key an affinity id maps to among `keys` (undefined when there are none).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const owner = (affinity: string, keys: ReadonlyArray<Key.Key>): Key.Key | undefined => {
  const a = fmix32(fnv1a(affinity))
  let best: Key.Key | undefined
  let bestScore = -Infinity
  for (const k of keys) {
    const s = score(a, k)
    if (s > bestScore) {
      best = k
      bestScore = s
    }
  }
  return best
}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make: Effect.Effect<KeySelector.Service, never, KeySelector.KeySelector | KeyPool.KeyPool> =
  Effect.gen(function* () {
    const inner = yield* KeySelector.KeySelector
    const pool = yield* KeyPool.KeyPool

    // The session's key among the request's candidates (undefined when none is a candidate).
    const ownerFor = (affinity: string, request: KeySelector.SelectRequest, keys: ReadonlyArray<Key.Key>) =>
      owner(
        affinity,
        keys.filter((k) => KeySelector.isCandidate(request, k))
      )

    return KeySelector.fromDecide((request) => {
      const affinity = request.affinity
      if (affinity === undefined) return inner.decide(request)
      return withKeys(pool, (keys) => {
        const best = ownerFor(affinity, request, keys)
        if (best === undefined) return inner.decide(request)
        // Refused (at once or after a wait): the inner selector's own choice.
        return KeySelector.andThen(inner.decide(KeySelector.withOnly(request, best)), (own) =>
          KeySelector.isNoKeyAvailable(own) ? inner.decide(request) : own
        )
      })
    })
  })

/**
 * Requires the inner `KeySelector`.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer: Layer.Layer<KeySelector.KeySelector, never, KeySelector.KeySelector | KeyPool.KeyPool> =
  Layer.effect(KeySelector.KeySelector, make)
