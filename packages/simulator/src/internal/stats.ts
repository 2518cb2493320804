/** What the simulator saw, for tests and benchmarks; the counters are reset, the state is not. */
import type * as Simulator from "../Simulator.js"
import * as Ledger from "./ledger.js"
import { toUsd } from "./model.js"
import type { Sim } from "./state.js"
import { now } from "./state.js"

const usd = (nano: number | null): number | null => (nano === null ? null : toUsd(nano))

export const stats = (sim: Sim): Simulator.Stats => {
  const keyStats: Record<string, Simulator.KeyStats> = {}
  const at = now(sim)
  for (const k of sim.keys) {
    Ledger.roll(k, at)
    keyStats[k.label] = {
      label: k.label,
      account: k.account.name,
      requests: k.requests,
      byOutcome: { ...k.byOutcome },
      inFlight: k.inFlight,
      maxInFlight: k.maxInFlight,
      spend: toUsd(k.spend),
      overspend: toUsd(k.overspend),
      overspentRequests: k.overspentRequests,
      usage: toUsd(k.usage),
      limit: usd(k.limit),
      limitRemaining: usd(Ledger.remaining(k)),
      spendable: usd(Ledger.spendable(k)),
      revoked: k.revoked,
      keyLookups: k.keyLookups
    }
  }
  const accountStats: Record<string, Simulator.AccountStats> = {}
  for (const a of sim.accounts.values())
    accountStats[a.name] = {
      requests: a.requests,
      rateLimited: a.rateLimited,
      usage: toUsd(a.usage),
      balance: usd(Ledger.balance(a))
    }
  const g = sim.global
  return {
    requests: g.requests,
    byOutcome: { ...g.byOutcome },
    byRoute: { ...g.byRoute },
    inFlight: g.inFlight,
    maxInFlight: g.maxInFlight,
    unauthenticated: g.unauthenticated,
    spend: toUsd(g.spend),
    overspend: toUsd(g.overspend),
    keys: keyStats,
    accounts: accountStats
  }
}

export const reset = (sim: Sim): void => {
  const g = sim.global
  g.requests = 0
  g.byOutcome = {}
  g.byRoute = {}
  g.maxInFlight = g.inFlight
  g.unauthenticated = 0
  g.spend = 0
  g.overspend = 0
  for (const k of sim.keys) {
    k.requests = 0
    k.byOutcome = {}
    k.maxInFlight = k.inFlight
    k.spend = 0
    k.overspend = 0
    k.overspentRequests = 0
    k.keyLookups = 0
  }
  for (const a of sim.accounts.values()) {
    a.requests = 0
    a.rateLimited = 0
  }
}
