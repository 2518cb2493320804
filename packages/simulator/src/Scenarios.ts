/**
 * Ready-made simulator pools for load tests and benchmarks, shaped like the scenarios issue 14
 * measured against an independent OpenRouter stand-in: accounts with per-second request windows
 * (more keys on one account do not add capacity), a key capped at $0.50, a revoked key, keys
 * that fail, reset connections or stall. Requests name {@link model}, which costs exactly $0.01,
 * so a capped key's budget is a whole number of requests and overspend is easy to read.
 *
 * @since 0.1.0
 */
import * as prng from "./internal/prng.js"
import type * as Simulator from "./Simulator.js"
import { defaultModels } from "./internal/model.js"

/**
 * A pool and the load to put on it.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Scenario {
  readonly name: string
  readonly description: string
  readonly config: Simulator.Config
  /** The model the requests should name. */
  readonly model: string
  readonly requests: number
  readonly concurrency: number
  /** What the accounts' windows admit per second, all together: the ceiling for goodput. */
  readonly admittedPerSecond: number
}

/**
 * $0.01 a request, nothing per token.
 *
 * @since 0.1.0
 * @category Constants
 */
export const model = "sim/penny-a-request"

const models: ReadonlyArray<Simulator.ModelConfig> = [
  ...defaultModels,
  { id: model, promptPrice: 0, completionPrice: 0, requestPrice: 0.01 }
]

const admitted = (accounts: Record<string, Simulator.AccountConfig>): number =>
  Object.values(accounts).reduce(
    (sum, a) => sum + (a.rpm === undefined || a.rpm === null ? 0 : (a.rpm * 1000) / (a.windowMs ?? 60_000)),
    0
  )

/**
 * Trouble: 5 keys over 2 accounts (windows of 60 and 200 requests a second), a key capped at
 * $0.50 (exactly 50 requests), a revoked key, a key failing 30 % with 503, 5 % with 500 and 2 %
 * with a connection reset, and a key stalling 2 % of the time for 2 s; 3,000 requests at
 * concurrency 32.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const trouble = (seed = 1): Scenario => {
  const accounts = { north: { rpm: 60, windowMs: 1_000 }, south: { rpm: 200, windowMs: 1_000 } }
  const key = (i: number, label: string, account: string, extra: Partial<Simulator.KeyConfig> = {}) => ({
    label,
    account,
    secret: prng.simulatedSecret(seed, i),
    ...extra
  })
  return {
    name: "trouble",
    description:
      "5 keys over 2 accounts (60/s, 200/s); a $0.50 cap, a revoked key, 5xx and resets, 2 s stalls",
    config: {
      seed,
      models,
      keys: [
        key(0, "north-steady", "north"),
        key(1, "north-capped", "north", { limit: 0.5 }),
        key(2, "north-revoked", "north", { revoked: true }),
        key(3, "south-flaky", "south", { faults: { rates: { "503": 0.3, "500": 0.05, reset: 0.02 } } }),
        key(4, "south-staller", "south", { faults: { rates: { stall: 0.02 }, stallMs: 2_000 } })
      ],
      accounts,
      latency: { kind: "lognormal", median: 20, p99: 80 }
    },
    model,
    requests: 3_000,
    concurrency: 32,
    admittedPerSecond: admitted(accounts)
  }
}

/**
 * Chaos: 8 keys over 3 accounts with tight windows (40, 60 and 30 requests a second), 5xx,
 * resets, 3 s stalls, a key capped at $0.50 and a revoked key; 10,000 requests at concurrency 100.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const chaos = (seed = 1): Scenario => {
  const accounts = {
    red: { rpm: 40, windowMs: 1_000 },
    green: { rpm: 60, windowMs: 1_000 },
    blue: { rpm: 30, windowMs: 1_000 }
  }
  const key = (i: number, label: string, account: string, extra: Partial<Simulator.KeyConfig> = {}) => ({
    label,
    account,
    secret: prng.simulatedSecret(seed, 100 + i),
    ...extra
  })
  const stalls: Simulator.Faults = { rates: { stall: 0.03 }, stallMs: 3_000 }
  return {
    name: "chaos",
    description:
      "8 keys over 3 accounts (40/s, 60/s, 30/s); 5xx, resets, 3 s stalls, a $0.50 cap, a revoked key",
    config: {
      seed,
      models,
      keys: [
        key(0, "red-steady", "red"),
        key(1, "red-5xx", "red", { faults: { rates: { "500": 0.15, "502": 0.1, "503": 0.1 } } }),
        key(2, "red-capped", "red", { limit: 0.5 }),
        key(3, "green-steady", "green"),
        key(4, "green-resets", "green", { faults: { rates: { reset: 0.1, "408": 0.05 } } }),
        key(5, "green-staller", "green", { faults: stalls }),
        key(6, "blue-revoked", "blue", { revoked: true }),
        key(7, "blue-mixed", "blue", {
          faults: { rates: { "503": 0.1, reset: 0.05, stall: 0.02 }, stallMs: 3_000 }
        })
      ],
      accounts,
      latency: { kind: "lognormal", median: 20, p99: 120 }
    },
    model,
    requests: 10_000,
    concurrency: 100,
    admittedPerSecond: admitted(accounts)
  }
}
