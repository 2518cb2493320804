/**
 * Named clients (virtual keys): each its own token, a spend budget per UTC period, a request rate
 * and the models it may ask for. All synchronous: the handler decides with the engine's clock and
 * no fiber, and a gateway with no clients never reaches this module.
 *
 * A budget is never overshot by concurrent requests: each request reserves an estimate before
 * it is forwarded (refused when settled spend + reservations + this estimate exceed the budget),
 * and its answer's cost replaces the estimate when it settles. So spend stays within the budget
 * whenever an answer costs no more than its estimate.
 */
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Gateway from "../Gateway.js"
import type * as GatewayConfig from "../GatewayConfig.js"

/** What is kept per client id across reloads (spend must not restart when the config does). */
export interface Account {
  readonly id: string
  /** Start (epoch ms) of the budget period `spent` belongs to. */
  periodStart: number
  /** USD settled in the current period. */
  spent: number
  /** USD held by requests in flight. */
  reserved: number
  /** USD spent since the gateway started, for `/metrics` and `/status`. */
  spentTotal: number
  requests: number
  refused: { budget: number; rate: number; model: number }
  /** Sliding one-minute window of request times: a ring of `rpm` slots (see {@link admitRate}). */
  ring: Array<number>
  next: number
}

/** Every client's account, shared by the engines of one gateway. */
export type Ledger = Map<string, Account>

export const makeLedger = (): Ledger => new Map()

export const account = (ledger: Ledger, client: GatewayConfig.ClientConfig, now: number): Account => {
  let a = ledger.get(client.id)
  if (a === undefined) {
    a = {
      id: client.id,
      periodStart: client.budget === undefined ? 0 : CreditLookup.periodStart(client.budget.period, now),
      spent: 0,
      reserved: 0,
      spentTotal: 0,
      requests: 0,
      refused: { budget: 0, rate: 0, model: 0 },
      ring: [],
      next: 0
    }
    ledger.set(client.id, a)
  }
  return a
}

/** Rolls the period over at 00:00 UTC (daily, Monday weekly, the 1st monthly): settled spend restarts. */
const roll = (a: Account, budget: GatewayConfig.ClientBudget, now: number) => {
  const start = CreditLookup.periodStart(budget.period, now)
  if (start !== a.periodStart) {
    a.periodStart = start
    a.spent = 0
  }
}

/** `*`, `prefix/*` or an exact id. */
export const modelAllowed = (patterns: ReadonlyArray<string>, model: string): boolean => {
  for (const p of patterns) {
    if (p === "*" || p === model) return true
    if (p.endsWith("*") && model.startsWith(p.slice(0, -1))) return true
  }
  return false
}

/** A request a client may not make now. */
export interface Refusal {
  readonly status: 403 | 429
  readonly code: "client_model_not_allowed" | "client_budget_exceeded" | "client_rate_limited"
  readonly message: string
  /** When it may ask again (epoch ms), for a 429. */
  readonly resetAt: number | undefined
}

/** A request admitted for a client: settled once (idempotent), with the answer's cost or nothing. */
export interface Charge {
  readonly settle: (cost: number | undefined, succeeded: boolean) => void
}

/**
 * The rate check over the last minute: a ring of the last `rpm` request times. A request is
 * admitted when the oldest of them is over a minute old; exact sliding window, constant time.
 */
const admitRate = (a: Account, rpm: number, now: number): number | undefined => {
  if (a.ring.length < rpm) {
    a.ring.push(now)
    return undefined
  }
  const oldest = a.ring[a.next]!
  if (oldest + 60_000 > now) return oldest + 60_000
  a.ring[a.next] = now
  a.next = (a.next + 1) % rpm
  return undefined
}

/**
 * The amount reserved for one request. A client's own pricing wins: `max_tokens` × `usdPerToken`
 * when both are known, or its `reserveUsd` when it set one; else `priced`, the request's worst
 * case from the model price table (prices.ts), when the table knows the model; else `reserveUsd`.
 */
export const estimate = (
  budget: GatewayConfig.ClientBudget,
  maxTokens: unknown,
  priced?: number | undefined
): number =>
  budget.usdPerToken !== undefined && typeof maxTokens === "number" && maxTokens > 0
    ? maxTokens * budget.usdPerToken
    : budget.priced === true && priced !== undefined
      ? priced
      : budget.reserveUsd

/** The 403 for a model outside the client's patterns, or undefined. */
export const checkModels = (
  a: Account,
  client: GatewayConfig.ClientConfig,
  models: ReadonlyArray<string>
): Refusal | undefined => {
  if (client.models === undefined) return undefined
  for (const m of models) {
    if (!modelAllowed(client.models, m)) {
      a.refused.model++
      return {
        status: 403,
        code: "client_model_not_allowed",
        message: `client "${client.id}" may not use model "${m}" (allowed: ${client.models.join(", ")})`,
        resetAt: undefined
      }
    }
  }
  return undefined
}

export const overBudget = (client: GatewayConfig.ClientConfig, resetAt: number): Refusal => ({
  status: 429,
  code: "client_budget_exceeded",
  message: `client "${client.id}" has spent its ${client.budget!.period} budget of $${client.budget!.usd}`,
  resetAt
})

export const overRate = (client: GatewayConfig.ClientConfig, resetAt: number): Refusal => ({
  status: 429,
  code: "client_rate_limited",
  message: `client "${client.id}" is over its rate of ${client.rpm} requests per minute`,
  resetAt
})

/**
 * Admits one request of `client` for `models` (the request's model, or its `models` list), or
 * says why not. On admission the budget's estimate is held until the returned charge settles.
 * `priced`: the request's worst case from the price table, when known.
 */
export const admit = (
  ledger: Ledger,
  client: GatewayConfig.ClientConfig,
  models: ReadonlyArray<string>,
  maxTokens: unknown,
  now: number,
  priced?: number | undefined
): Charge | Refusal => {
  const a = account(ledger, client, now)
  const wrongModel = checkModels(a, client, models)
  if (wrongModel !== undefined) return wrongModel
  const budget = client.budget
  let amount = 0
  if (budget !== undefined) {
    roll(a, budget, now)
    amount = estimate(budget, maxTokens, priced)
    // Integer micro-dollars would drift less, but the sum is compared with a small tolerance.
    if (a.spent + a.reserved + amount > budget.usd + 1e-9) {
      a.refused.budget++
      return overBudget(client, CreditLookup.nextReset(budget.period, now))
    }
  }
  if (client.rpm !== undefined) {
    const until = admitRate(a, client.rpm, now)
    if (until !== undefined) {
      a.refused.rate++
      return overRate(client, until)
    }
  }
  a.requests++
  a.reserved += amount
  return new Reserved(a, amount)
}

/** A reservation settled once: a class, not an object literal with a closure made per request. */
class Reserved implements Charge {
  private done = false
  constructor(
    private readonly a: Account,
    private readonly amount: number
  ) {}
  settle(cost: number | undefined, succeeded: boolean): void {
    if (this.done) return
    this.done = true
    const a = this.a
    a.reserved -= this.amount
    // A success whose cost is unknown is charged its estimate: never less than it may have cost.
    const spent = succeeded ? (cost ?? this.amount) : 0
    a.spent += spent
    a.spentTotal += spent
  }
}

export const isRefusal = (r: Charge | Refusal): r is Refusal => "status" in r

/** One client's row in `/status`: never its token. */
export type ClientView = Gateway.ClientStatus

export const views = (
  ledger: Ledger,
  clients: ReadonlyArray<GatewayConfig.ClientConfig>,
  now: number
): ReadonlyArray<ClientView> =>
  clients.map((c) => {
    const a = account(ledger, c, now)
    const b = c.budget
    if (b !== undefined) roll(a, b, now)
    return {
      id: c.id,
      requests: a.requests,
      spendUsd: a.spentTotal,
      refused: { ...a.refused },
      budget:
        b === undefined
          ? null
          : {
              usd: b.usd,
              period: b.period,
              spentUsd: a.spent,
              reservedUsd: a.reserved,
              remainingUsd: Math.max(0, b.usd - a.spent - a.reserved),
              resetsAt: new Date(CreditLookup.nextReset(b.period, now)).toISOString()
            },
      rpm: c.rpm ?? null,
      models: c.models ?? null
    }
  })
