/**
 * Which key served a generation, for `GET /generation?id=` (OpenRouter answers it only for the
 * account that made it). Bounded: the oldest entries go first, so memory stays flat under load.
 */
import type { EngineState } from "./state.js"

/** The most generation ids remembered per engine. */
export const MAX_GENERATIONS = 10_000

/** Ids in the order they came, a ring, so the oldest goes first with no iterator per answer. */
interface Remembered {
  readonly keyOf: Map<string, string>
  readonly order: Array<string>
  next: number
}

const byEngine = new WeakMap<EngineState, Remembered>()

/** Remembers that `keyId` served the generation `id` (the `X-Generation-Id` of an answer). */
export const remember = (engine: EngineState, id: string, keyId: string): void => {
  let r = byEngine.get(engine)
  if (r === undefined) {
    r = { keyOf: new Map(), order: [], next: 0 }
    byEngine.set(engine, r)
  }
  if (r.keyOf.has(id)) return void r.keyOf.set(id, keyId)
  r.keyOf.set(id, keyId)
  if (r.order.length < MAX_GENERATIONS) return void r.order.push(id)
  // Full: the oldest id makes room for this one.
  r.keyOf.delete(r.order[r.next]!)
  r.order[r.next] = id
  r.next = (r.next + 1) % MAX_GENERATIONS
}

/** The id of the key that served the generation, if remembered. */
export const keyOf = (engine: EngineState, id: string): string | undefined =>
  byEngine.get(engine)?.keyOf.get(id)
