/**
 * What `GET /status` answers, declared once: `Gateway.ts` re-exports these types.
 */
/**
 * A key's health in `/status`: `healthy`; `half-open` (its cooldown ended, a trial is allowed);
 * `ejected` by the health-aware strategy; or `cooling` after a `Retry-After`.
 *
 * @since 0.2.0
 * @category Models
 */
export type KeyHealth = "healthy" | "half-open" | "ejected" | "cooling"

/**
 * One key in `/status`. Never holds its secret.
 *
 * @since 0.2.0
 * @category Models
 */
export interface KeyStatus {
  readonly id: string
  readonly account: string | null
  readonly weight: number
  readonly health: KeyHealth
  /** Why the health-aware strategy ejected it (an error tag such as `ServerError`), when ejected. */
  readonly reason: string | null
  /** ISO time its cooldown or ejection ends, if it has one now. */
  readonly coolingUntil: string | null
  /**
   * Remaining credit in USD: the ledger's live balance, else the last one reported; null when
   * unknown or unlimited. Read it with {@link KeyStatus.creditTracked}: null with `false` means no
   * credit strategy runs, so nothing looks credit up.
   */
  readonly credit: number | null
  /** Whether the key's credit is tracked: a credit strategy runs, or a balance was reported. */
  readonly creditTracked: boolean
  /** The last credit lookup's error tag, if it failed. */
  readonly creditError: string | null
  readonly inFlight: number
  /** Its own concurrency cap, if it sets one. */
  readonly maxConcurrency: number | null
  readonly requests: number
  readonly successes: number
  readonly failures: number
  /** Failures by error tag (`RateLimited`, `ServerError`, ...). */
  readonly errors: Readonly<Record<string, number>>
  readonly errorRate: number
  readonly latencyMs: {
    readonly p50: number
    readonly p99: number
    readonly mean: number
    readonly max: number
  }
  readonly spendUsd: number
  /** At its current burn rate, when its credit runs out, and when its `limit_reset` brings it back. */
  readonly forecast: CreditForecast
}

/**
 * A credit forecast: the burn rate over the last five minutes (of the monitor's spend), when the
 * credit runs out at that rate (null: unknown or unlimited credit, or not burning), and when the
 * `limit_reset` period renews it at 00:00 UTC (null: no reset, or no credit lookup yet).
 *
 * @since 0.3.0
 * @category Models
 */
export interface CreditForecast {
  readonly burnUsdPerMin: number
  readonly exhaustsAt: string | null
  readonly resetsAt: string | null
}

/**
 * A named client in `/status`: its usage, refusals and budget. Never its token.
 *
 * @since 0.3.0
 * @category Models
 */
export interface ClientStatus {
  readonly id: string
  /** Requests admitted. */
  readonly requests: number
  /** USD spent since the gateway started. */
  readonly spendUsd: number
  /** Requests refused, by reason. */
  readonly refused: { readonly budget: number; readonly rate: number; readonly model: number }
  readonly budget: {
    readonly usd: number
    readonly period: "daily" | "weekly" | "monthly"
    /** Settled this period. */
    readonly spentUsd: number
    /** Held by requests in flight. */
    readonly reservedUsd: number
    readonly remainingUsd: number
    readonly resetsAt: string
  } | null
  readonly rpm: number | null
  readonly models: ReadonlyArray<string> | null
}

/**
 * What `GET /status` answers.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Status {
  readonly status: "ok" | "draining"
  /** 1 at start, one more per applied reload. */
  readonly generation: number
  readonly inFlightRequests: number
  /** The strategy stack's names, outermost first. */
  readonly strategy: ReadonlyArray<string>
  readonly totals: {
    readonly requests: number
    readonly successes: number
    readonly failures: number
    readonly retries: number
    readonly spendUsd: number
    readonly inFlight: number
    /** Answers that were the caller's own fault (bad request, unknown model), by error tag: no key's failure. */
    readonly requestErrors: Readonly<Record<string, number>>
    /**
     * Hedged requests by outcome: `won`/`lost` (which attempt answered first), `failed` (the
     * hedge failed), `cancelled`, and hedges due but not made (`capped` by the rate cap, `no_key`).
     */
    readonly hedges: Readonly<Record<"won" | "lost" | "failed" | "cancelled" | "capped" | "no_key", number>>
    /** The hedge delay in use: `hedge.afterMs`, or the learned one; null when off or not learned yet. */
    readonly hedgeAfterMs: number | null
  }
  readonly keys: ReadonlyArray<KeyStatus>
  /** Per account, its keys' forecasts summed, and its rate window as pacing learned it. */
  readonly accounts: ReadonlyArray<{
    readonly id: string
    readonly forecast: CreditForecast
    readonly window: AccountWindow | null
  }>
  /** Named clients (empty when none is configured). */
  readonly clients: ReadonlyArray<ClientStatus>
}

/**
 * An account's rate window as `account-pacing` learned it (from `X-RateLimit-Limit` and 429s; over
 * a fleet on Redis, from any replica's).
 *
 * @since 0.4.0
 * @category Models
 */
export interface AccountWindow {
  /** Requests this replica admits per window (the fleet's limit ÷ live replicas on Redis); null until learned. */
  readonly limit: number | null
  /** The limit came from `X-RateLimit-Limit` (else an estimate). */
  readonly exact: boolean
  readonly windowMs: number | null
  /** Requests this replica sent in the current window. */
  readonly used: number
  /** Closed (a 429, or the window full) until then; null when open. */
  readonly closedUntil: string | null
  readonly refusals: number
  /** On Redis: the whole fleet's limit and the live replicas sharing it; null alone. */
  readonly fleet: { readonly limit: number; readonly replicas: number } | null
}
