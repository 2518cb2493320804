import { expect } from "@effect/vitest"
import { KeySelector } from "@or-balancer/core"
import { ConcurrencyLimited } from "@or-balancer/strategies"
import { Context, Effect, Layer } from "effect"

// ConcurrencyLimited with its permits in reach, for the decision tests that hold the permits in
// use against the leases still open (ConcurrencyLimited.decide, HealthAware.decide).

export class Permits extends Context.Tag("test/Permits")<
  Permits,
  Effect.Effect<ConcurrencyLimited.Status>
>() {}

/** ConcurrencyLimited, 2 permits a key unless the key says, over the selector provided to it. */
export const limited = Layer.effectContext(
  Effect.map(ConcurrencyLimited.makeWithStatus({ defaultMax: 2 }), (m) =>
    Context.make(KeySelector.KeySelector, m.selector).pipe(Context.add(Permits, m.status))
  )
)

/** The permits in use per key and the selections waiting for one, as plain data. */
export const permitsOf = (ctx: Context.Context<Permits>) =>
  Effect.map(Context.get(ctx, Permits), (s) => ({
    inUse: Object.fromEntries(s.inUse),
    waiting: s.waiting
  }))

/** Every permit in use is held by a lease not yet reported, and each such lease holds one. */
export const expectHeldByOpen = (
  inUse: Readonly<Record<string, number>>,
  ids: ReadonlyArray<string>,
  open: ReadonlyArray<KeySelector.Lease>
) => {
  for (const id of ids) expect(inUse[id] ?? 0).toBe(open.filter((l) => l.key.id === id).length)
}
