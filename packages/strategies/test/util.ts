import { Key, KeyPool, KeySelector, StateStore } from "@or-balancer/core"
import { Effect, Layer, Redacted } from "effect"

export const key = (
  id: string,
  options: {
    readonly weight?: number
    readonly account?: string
    readonly maxConcurrency?: number
    readonly models?: ReadonlyArray<string>
  } = {}
): Key.Key => Key.make({ id, secret: Redacted.make(`sk-or-v1-test-${id}-000000000000`), ...options })

export const keys = (...ids: ReadonlyArray<string>) => ids.map((id) => key(id))

/** Pool and memory store, kept in the output so tests can reach them. */
export const base = (ks: ReadonlyArray<Key.Key>) =>
  Layer.mergeAll(KeyPool.layer(ks).pipe(Layer.orDie), StateStore.layerMemory)

export const request = (partial: Partial<KeySelector.SelectRequest> = {}): KeySelector.SelectRequest => ({
  attempt: 1,
  tried: new Set(),
  ...partial
})

/** Selects and gives the lease straight back (no verdict); the chosen key's id. */
export const pick = (partial: Partial<KeySelector.SelectRequest> = {}) =>
  Effect.flatMap(KeySelector.KeySelector, (s) =>
    KeySelector.use(
      s,
      request(partial),
      (l) => Effect.succeed(l.key.id),
      () => KeySelector.cancelled()
    )
  )

export const picks = (n: number, partial: Partial<KeySelector.SelectRequest> = {}) =>
  Effect.forEach(Array.from({ length: n }), () => pick(partial))

/** A gate refusing the given ids. */
export const refuse =
  (...ids: ReadonlyArray<string>): KeySelector.Gate =>
  (k) =>
    ids.includes(k.id) ? { reason: "ineligible" } : undefined

/**
 * The selector's synchronous decision, with a `Wait` as `undefined`: what the gateway's fast path
 * gets (a `Wait` sends the request to the Effect path, having taken nothing).
 */
export const decideNow = (
  selector: KeySelector.Service,
  req: KeySelector.SelectRequest
): KeySelector.Lease | KeySelector.NoKeyAvailable | undefined => {
  const d = selector.decide(req)
  return d instanceof KeySelector.Wait ? undefined : d
}

/** A lease (not a refusal, not undecided). */
export const isLeaseNow = (
  x: KeySelector.Lease | KeySelector.NoKeyAvailable | undefined
): x is KeySelector.Lease => x !== undefined && !(x instanceof KeySelector.NoKeyAvailable)
