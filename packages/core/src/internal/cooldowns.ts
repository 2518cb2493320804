// The Balancer's `Retry-After` cooldowns, per key or per account, kept in the StateStore so that
// replicas could share them; read as a gate on every selection.
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Balancer from "../Balancer.js"
import type * as Key from "../Key.js"
import type * as KeyPool from "../KeyPool.js"
import type * as KeySelector from "../KeySelector.js"
import type * as Monitor from "../Monitor.js"
import type * as StateStore from "../StateStore.js"
import * as UpstreamError from "../UpstreamError.js"

export const COOLDOWN = "or-balancer/cooldown"
const keyScope = (id: string) => `key:${id}`
const accountScope = (id: string) => `account:${id}`

/** The gate of the cooldowns still running at `now` (`undefined`: none). */
export const gateOf = (
  entries: ReadonlyArray<readonly [string, number]>,
  now: number
): KeySelector.Gate | undefined => {
  let active: Map<string, number> | undefined
  for (const [id, until] of entries) {
    if (until > now) (active ??= new Map()).set(id, until)
  }
  if (active === undefined) return undefined
  const cooling = active
  return (key: Key.Key) => {
    const k = cooling.get(keyScope(key.id))
    const a = key.account === undefined ? undefined : cooling.get(accountScope(key.account))
    const until = k === undefined ? a : a === undefined ? k : Math.max(k, a)
    return until === undefined ? undefined : { reason: "cooldown", until }
  }
}

export const make = (
  store: StateStore.Service,
  pool: KeyPool.Service,
  monitor: Monitor.Service,
  maxCooldownMs: number
) => {
  const coolDown = (key: Key.Key, error: UpstreamError.UpstreamError, now: number) =>
    Option.match(UpstreamError.retryAfterOf(error), {
      onNone: () => Effect.void,
      onSome: (wait) => {
        const until = now + Math.min(maxCooldownMs, Duration.toMillis(wait))
        const accountWide =
          error._tag === "RateLimited" && error.scope === "account" && key.account !== undefined
        const id = accountWide ? accountScope(key.account!) : keyScope(key.id)
        // Expired cooldowns are dropped here, on the (rare) failure path, so the namespace every
        // selection reads holds only cooldowns that may still be running.
        const prune = Effect.flatMap(store.entries<number>(COOLDOWN), (entries) =>
          Effect.forEach(
            entries.filter(([, u]) => u <= now),
            ([expired]) => store.set(COOLDOWN, expired, undefined),
            { discard: true }
          )
        )
        return prune
          .pipe(
            Effect.zipRight(
              store.modify<number, void>(COOLDOWN, id, (cur) => [undefined, Math.max(cur ?? 0, until)])
            )
          )
          .pipe(
            Effect.zipRight(
              accountWide
                ? Effect.flatMap(pool.get, (keys) =>
                    Effect.forEach(
                      keys.filter((k) => k.account === key.account),
                      (k) => monitor.cooldown(k, until),
                      { discard: true }
                    )
                  )
                : monitor.cooldown(key, until)
            )
          )
      }
    })

  const cooldowns: Effect.Effect<ReadonlyArray<Balancer.Cooldown>> = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const entries = yield* store.entries<number>(COOLDOWN)
    return entries
      .filter(([, until]) => until > now)
      .map(([id, until]) => {
        const [scope, ...rest] = id.split(":")
        return { scope: scope as "key" | "account", id: rest.join(":"), until }
      })
  })

  return { coolDown, cooldowns }
}
