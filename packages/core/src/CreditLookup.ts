/**
 * Where a key's live credit comes from. The HTTP package implements it over OpenRouter's
 * `GET /api/v1/key`; tests use {@link layerMemory}. The credit-aware, threshold and health-probe
 * strategies depend on this Tag only.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import type * as Key from "./Key.js"
import * as UpstreamError from "./UpstreamError.js"

/**
 * What `GET /api/v1/key` says of a key (the fields the balancer uses).
 *
 * @since 0.1.0
 * @category Models
 */
export interface KeyInfo {
  readonly label: string | undefined
  /** Credit cap in USD; null means unlimited. */
  readonly limit: number | null
  /** USD left under the cap; null means unlimited. */
  readonly limitRemaining: number | null
  readonly limitReset: "daily" | "weekly" | "monthly" | null
  readonly usage: number
  readonly isFreeTier: boolean
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  readonly lookup: (key: Key.Key) => Effect.Effect<KeyInfo, UpstreamError.UpstreamError>
  /**
   * The account's balance in USD (`total_credits − total_usage` from OpenRouter's
   * `GET /api/v1/credits`), when a management key is configured for it; `undefined` otherwise. A
   * key's spendable amount is the smaller of its own `limitRemaining` and this.
   *
   * @since 0.4.0
   */
  readonly accountBalance?:
    ((account: string) => Effect.Effect<number | undefined, UpstreamError.UpstreamError>) | undefined
}

const DAY_MS = 86_400_000

/**
 * When the `limit_reset` period holding `now` began (epoch ms), as OpenRouter counts periods: from
 * UTC midnight of the day, of the week's Monday, or of the month's first day.
 *
 * @since 0.1.0
 * @category Periods
 */
export const periodStart = (reset: "daily" | "weekly" | "monthly", now: number): number => {
  const d = new Date(now)
  const midnight = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())
  switch (reset) {
    case "daily":
      return midnight
    case "weekly":
      return midnight - ((d.getUTCDay() + 6) % 7) * DAY_MS
    case "monthly":
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)
  }
}

/**
 * When the `limit_reset` period holding `now` ends and the key's cap applies afresh (epoch ms).
 *
 * @since 0.1.0
 * @category Periods
 */
export const nextReset = (reset: "daily" | "weekly" | "monthly", now: number): number => {
  const start = periodStart(reset, now)
  if (reset === "daily") return start + DAY_MS
  if (reset === "weekly") return start + 7 * DAY_MS
  const d = new Date(start)
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)
}

/**
 * @since 0.1.0
 * @category Context
 */
export class CreditLookup extends Context.Tag("@or-balancer/core/CreditLookup")<CreditLookup, Service>() {}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const keyInfo = (limitRemaining: number | null, limit: number | null = limitRemaining): KeyInfo => ({
  label: undefined,
  limit,
  limitRemaining,
  limitReset: null,
  usage: limit === null || limitRemaining === null ? 0 : limit - limitRemaining,
  isFreeTier: false
})

/**
 * An in-memory lookup for tests and examples: a map from key id to its info, changeable at run
 * time; a key not in the map answers `Unauthorized`. `lookups` counts calls per key id.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const makeMemory = (
  initial: Readonly<Record<string, KeyInfo>>,
  /** Account balances (USD), as a management key would see them; none: no `accountBalance`. */
  accounts?: Readonly<Record<string, number>>
) =>
  Effect.gen(function* () {
    const infos = yield* Ref.make(new Map(Object.entries(initial)))
    const counts = yield* Ref.make(new Map<string, number>())
    const balances = yield* Ref.make(new Map(Object.entries(accounts ?? {})))
    const service = CreditLookup.of({
      ...(accounts === undefined
        ? {}
        : { accountBalance: (account: string) => Effect.map(Ref.get(balances), (m) => m.get(account)) }),
      lookup: (key) =>
        Ref.update(counts, (m) => new Map(m).set(key.id, (m.get(key.id) ?? 0) + 1)).pipe(
          Effect.zipRight(Ref.get(infos)),
          Effect.flatMap((m) => {
            const info = m.get(key.id)
            return info === undefined
              ? Effect.fail(new UpstreamError.Unauthorized({ message: `key ${key.id} is not known` }))
              : Effect.succeed(info)
          })
        )
    })
    return {
      service,
      set: (id: string, info: KeyInfo | undefined) =>
        Ref.update(infos, (m) => {
          const next = new Map(m)
          if (info === undefined) next.delete(id)
          else next.set(id, info)
          return next
        }),
      lookups: (id: string) => Effect.map(Ref.get(counts), (m) => m.get(id) ?? 0),
      setAccount: (account: string, balance: number) =>
        Ref.update(balances, (m) => new Map(m).set(account, balance))
    }
  })

/**
 * @since 0.1.0
 * @category Layers
 */
export const layerMemory = (initial: Readonly<Record<string, KeyInfo>>): Layer.Layer<CreditLookup> =>
  Layer.effect(
    CreditLookup,
    Effect.map(makeMemory(initial), (m) => m.service)
  )
