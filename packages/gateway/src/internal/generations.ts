/**
 * Which key served a generation, for `GET /generation?id=` (OpenRouter answers it only for the
 * account that made it). Bounded: the oldest entries go first, so memory stays flat under load.
 */
import type { EngineState } from "./state.js"

/** The most generation ids remembered per engine. */
export const MAX_GENERATIONS = 10_000

const byEngine = new WeakMap<EngineState, Map<string, string>>()

/** Remembers that `keyId` served the generation `id` (the `X-Generation-Id` of an answer). */
export const remember = (engine: EngineState, id: string, keyId: string): void => {
  let map = byEngine.get(engine)
  if (map === undefined) {
    map = new Map()
    byEngine.set(engine, map)
  }
  map.set(id, keyId)
  if (map.size > MAX_GENERATIONS) map.delete(map.keys().next().value!)
}

/** The id of the key that served the generation, if remembered. */
export const keyOf = (engine: EngineState, id: string): string | undefined => byEngine.get(engine)?.get(id)
