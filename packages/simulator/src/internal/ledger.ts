/**
 * Credit: each key's cap within its `limit_reset` period, each account's balance and its spend in
 * flight, all in integer nano-dollars. Checked on arrival and debited on completion, as
 * OpenRouter does, so concurrent requests can overshoot a small cap (and the stats say by how much).
 */
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type { AccountState, KeyState, Sim } from "./state.js"
import { now } from "./state.js"

// A key's `limitReset` period: the cap applies to the spend within it. Periods follow the UTC
// calendar (00:00 UTC; Monday's for weekly, the 1st's for monthly) as OpenRouter's do; a test's
// `resetPeriodMs` counts from the key's start instead.
export const roll = (k: KeyState, at: number): void => {
  if (k.limitReset === null) return
  const length = k.resetPeriodMs
  if (length === undefined) {
    const start = CreditLookup.periodStart(k.limitReset, at)
    if (start <= k.periodStart) return
    k.periodStart = start
    k.periodUsage = 0
    return
  }
  if (at < k.periodStart + length) return
  k.periodStart += Math.floor((at - k.periodStart) / length) * length
  k.periodUsage = 0
}

/** What is left of the key's own cap this period (null: unlimited). */
export const remaining = (k: KeyState): number | null =>
  k.limit === null ? null : Math.max(0, k.limit - k.periodUsage)

/** When the key's current `limit_reset` period ends (epoch ms), or null when it never does. */
export const resetsAt = (k: KeyState, at: number): number | null => {
  if (k.limitReset === null) return null
  if (k.resetPeriodMs !== undefined) return k.periodStart + k.resetPeriodMs
  return CreditLookup.nextReset(k.limitReset, at)
}

/** The account's balance, or null when its credits are not enforced. May be negative. */
export const balance = (a: AccountState): number | null =>
  a.totalCredits === undefined ? null : a.totalCredits - a.usage

/** The smaller of the key's remaining cap and its account's balance (null: unbounded). */
export const spendable = (k: KeyState): number | null => {
  const own = remaining(k)
  const acc = balance(k.account)
  if (acc === null) return own
  return own === null ? Math.max(0, acc) : Math.min(own, Math.max(0, acc))
}

/** What `GET /credits` reports as `total_credits`: configured, or the sum of its keys' caps. */
export const totalCredits = (sim: Sim, a: AccountState): number => {
  if (a.totalCredits !== undefined) return a.totalCredits
  let caps = 0
  for (const k of sim.keys) if (k.account === a) caps += k.limit ?? 0
  return caps
}

export type Refusal =
  | { readonly _tag: "KeyLimit"; readonly affordableTokens: number }
  | { readonly _tag: "Credits" }
  | { readonly _tag: "InFlight" }
  | { readonly _tag: "TooHeavy" }

/**
 * Why a request of this cost cannot run now, or undefined. The order is OpenRouter's as far as
 * it is observable: the account's balance (a negative one refuses even free models), the key's
 * own cap, then the account's budget for spend in flight.
 */
export const refusal = (
  k: KeyState,
  cost: number,
  promptCost: number,
  perCompletionToken: number,
  at: number
): Refusal | undefined => {
  const acc = k.account
  const left = balance(acc)
  if (left !== null && (left < 0 || cost > left)) return { _tag: "Credits" }
  roll(k, at)
  if (k.limit !== null && cost > k.limit - k.periodUsage) {
    const affordableTokens = Math.max(
      0,
      Math.floor((k.limit - k.periodUsage - promptCost) / (perCompletionToken > 0 ? perCompletionToken : 1))
    )
    return { _tag: "KeyLimit", affordableTokens }
  }
  if (acc.inFlightBudget !== null && cost > 0) {
    // One request bigger than the whole budget never fits: not worth a retry.
    if (cost > acc.inFlightBudget) return { _tag: "TooHeavy" }
    if (acc.inFlightCost + cost > acc.inFlightBudget) return { _tag: "InFlight" }
  }
  return undefined
}

export interface Debit {
  readonly key: KeyState
  readonly model: string
  readonly cost: number
  readonly promptTokens: number
  readonly completionTokens: number
  readonly stream: boolean
  readonly arrivedAt: number
}

/** Bills an answer and records its generation. */
export const debit = (sim: Sim, d: Debit, id: string): void => {
  const k = d.key
  const at = now(sim)
  roll(k, at)
  const before = k.periodUsage
  k.usage += d.cost
  k.periodUsage += d.cost
  k.account.usage += d.cost
  k.spend += d.cost
  sim.global.spend += d.cost
  if (k.limit !== null && k.periodUsage > k.limit) {
    const over = k.periodUsage - Math.max(k.limit, before)
    k.overspend += over
    k.overspentRequests++
    sim.global.overspend += over
  }
  const generations = sim.generations
  generations.set(id, {
    id,
    account: k.account.name,
    model: d.model,
    cost: d.cost,
    promptTokens: d.promptTokens,
    completionTokens: d.completionTokens,
    streamed: d.stream,
    createdAt: new Date(d.arrivedAt).toISOString(),
    latencyMs: at - d.arrivedAt
  })
  if (generations.size > sim.settings.generationsKept) generations.delete(generations.keys().next().value!)
}
