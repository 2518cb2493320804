/**
 * The model price table named clients' reservations are priced from: OpenRouter's public
 * `GET /models` (`pricing.prompt`, `pricing.completion` in USD per token, `pricing.request` per
 * request), fetched when the gateway starts and refreshed every {@link REFRESH_MS}, only when a
 * client's budget is priced this way. A request reserves its worst case: the prompt's tokens
 * (over-estimated from the body's size) × the prompt price, plus `max_tokens` (else the model's
 * `max_completion_tokens`, else {@link DEFAULT_MAX_TOKENS}) × the completion price, plus the
 * request price. It settles with the answer's `usage.cost`, so the overestimate is only held
 * while the request runs.
 */
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as GatewayConfig from "../GatewayConfig.js"

export interface Price {
  /** USD per token. */
  readonly prompt: number
  readonly completion: number
  /** USD per request. */
  readonly request: number
  /** The model's cap on completion tokens, when it says. */
  readonly maxCompletion: number | undefined
}

/** Shared by every configuration of one gateway (a reload keeps the table it had). */
export interface Table {
  prices: ReadonlyMap<string, Price>
}

export const makeTable = (): Table => ({ prices: new Map() })

export const REFRESH_MS = 10 * 60_000

/** The completion cap assumed when neither the request nor the model gives one. */
export const DEFAULT_MAX_TOKENS = 4096

/**
 * Bytes of body per prompt token assumed. Real text runs ~4 characters a token and the JSON
 * framing counts as well, so 2 over-counts the prompt (also for 3-byte UTF-8 scripts).
 */
const BYTES_PER_TOKEN = 2

const num = (v: unknown): number | undefined => {
  const n = typeof v === "string" ? Number(v) : typeof v === "number" ? v : NaN
  return Number.isFinite(n) && n >= 0 ? n : undefined
}

/** The table from a `GET /models` answer; a model with unreadable prices is left out (not priced). */
export const parse = (json: unknown): Map<string, Price> => {
  const out = new Map<string, Price>()
  const data = (json as { data?: unknown } | null)?.data
  if (!Array.isArray(data)) return out
  for (const m of data) {
    const id = (m as { id?: unknown }).id
    const p = (m as { pricing?: Record<string, unknown> }).pricing
    if (typeof id !== "string" || p === undefined || p === null) continue
    const prompt = num(p.prompt)
    const completion = num(p.completion)
    if (prompt === undefined || completion === undefined) continue
    const cap = num(
      (m as { top_provider?: { max_completion_tokens?: unknown } }).top_provider?.max_completion_tokens
    )
    out.set(id, { prompt, completion, request: num(p.request) ?? 0, maxCompletion: cap })
  }
  return out
}

/**
 * The worst-case cost of a request for `models` (the dearest of them, as a fallback list may use
 * any), or undefined when one of them is not in the table (the caller falls back to `reserveUsd`).
 */
export const worstCase = (
  table: Table,
  models: ReadonlyArray<string>,
  bodyBytes: number,
  maxTokens: unknown
): number | undefined => {
  if (models.length === 0) return undefined
  const promptTokens = Math.ceil(bodyBytes / BYTES_PER_TOKEN)
  let worst = 0
  for (const id of models) {
    const p = table.prices.get(id)
    if (p === undefined) return undefined
    const completion =
      typeof maxTokens === "number" && maxTokens > 0 ? maxTokens : (p.maxCompletion ?? DEFAULT_MAX_TOKENS)
    worst = Math.max(worst, promptTokens * p.prompt + completion * p.completion + p.request)
  }
  return worst
}

/** Fetches the table from `${baseUrl}/models` (public: no key). */
export const fetchPrices = (baseUrl: string): Effect.Effect<Map<string, Price>, unknown> =>
  Effect.tryPromise({
    try: (signal) =>
      fetch(`${baseUrl.replace(/\/$/, "")}/models`, { signal }).then((r) => {
        if (!r.ok) throw new Error(`GET /models answered ${r.status}`)
        return r.json()
      }),
    catch: (e) => e
  }).pipe(Effect.map(parse))

/**
 * Keeps `table` fresh: a fetch now, then one every {@link REFRESH_MS}; a failed fetch keeps the
 * last table. `baseUrl` is read at each fetch, so a reload to another upstream is followed.
 */
export const refresh = (table: Table, baseUrl: () => string): Effect.Effect<void> =>
  Effect.suspend(() => fetchPrices(baseUrl())).pipe(
    Effect.timeout(5_000),
    Effect.tap((prices) =>
      Effect.sync(() => {
        if (prices.size > 0) table.prices = prices
      })
    ),
    Effect.ignore
  )

const wanted = (config: GatewayConfig.GatewayConfig) => config.clients.some((c) => c.budget?.priced === true)

/**
 * Fetches the table now (start-up waits up to 5 s for it) when a client's budget is priced from
 * it, then refreshes it every {@link REFRESH_MS} in the scope, following the current config.
 */
export const keep = (
  table: Table,
  config: () => GatewayConfig.GatewayConfig
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const once = Effect.suspend(() =>
      wanted(config()) ? refresh(table, () => config().baseUrl) : Effect.void
    )
    yield* once
    yield* Effect.forkScoped(Effect.repeat(Effect.delay(once, REFRESH_MS), Schedule.forever))
  })
