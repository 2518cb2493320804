/**
 * Which key served a generation, for `GET /generation?id=` (OpenRouter answers it only for the
 * account that made it). Bounded: the oldest entries go first, so memory stays flat under load.
 */
import type { EngineState } from "./state.js"

/** The most generation ids remembered per engine (at least the latest half of them). */
export const MAX_GENERATIONS = 10_000

/**
 * Two generations of ids: new ones go to `current`; when it holds half the bound, it becomes
 * `previous` and the old `previous` is dropped whole. One `Map.set` per answer, where a ring
 * of exactly the latest 10,000 cost a lookup, a delete and an array write on every answer (and
 * the deletes left holes that made the map rehash).
 */
interface Remembered {
  current: Map<string, string>
  previous: Map<string, string>
}

const HALF = MAX_GENERATIONS / 2

const byEngine = new WeakMap<EngineState, Remembered>()

/** Remembers that `keyId` served the generation `id` (the `X-Generation-Id` of an answer). */
export const remember = (engine: EngineState, id: string, keyId: string): void => {
  let r = byEngine.get(engine)
  if (r === undefined) {
    r = { current: new Map(), previous: new Map() }
    byEngine.set(engine, r)
  }
  if (r.current.size >= HALF) {
    r.previous = r.current
    r.current = new Map()
  }
  r.current.set(id, keyId)
}

/** The id of the key that served the generation, if remembered (the latest answer's key first). */
export const keyOf = (engine: EngineState, id: string): string | undefined => {
  const r = byEngine.get(engine)
  return r === undefined ? undefined : (r.current.get(id) ?? r.previous.get(id))
}
