// The scenarios the bench runs (see `../scenarios.ts`): Trouble and Chaos from the simulator's
// `Scenarios`, Overload with the README's gateway config, and the stacks they run.
import * as Scenarios from "@or-balancer/simulator/Scenarios"
import * as Simulator from "@or-balancer/simulator/Simulator"

export interface Spec {
  readonly name: string
  readonly description: string
  readonly sim: Simulator.Config
  readonly model: string
  readonly requests: number
  readonly concurrency: number
  readonly rounds: number
  readonly boundMs: number
  readonly admittedPerSecond: number | null
  /** The gateway and simulator in a child process, apart from the load generator. */
  readonly apart: boolean
  /** The gateway config's strategy, retry and deadlines (the keys and accounts come from the pool). */
  readonly gateway: Record<string, unknown>
}

/** Overload's rounds (3; `--rounds=N` for a shorter full-size run). */
const ROUNDS = Number(process.argv.find((a) => a.startsWith("--rounds="))?.slice("--rounds=".length) ?? 3)

/**
 * A production stack: health, credit threshold, round robin (Trouble and Chaos run it under account pacing).
 * The threshold reserves each request's price (`estimate`, the scenarios' model costs $0.01) while
 * it is in flight: OpenRouter checks a key's cap when a request arrives and bills it when it ends,
 * so with nothing reserved every request in flight on a key near its cap passes the check and the
 * key ends past its cap by as many (Trouble measured $0.00–0.10 over the $0.50 key, 0–10 requests).
 */
const PRODUCTION_STACK = [
  { name: "health-aware", failureThreshold: 3 },
  { name: "threshold", threshold: 0.01, estimate: 0.01 },
  { name: "round-robin" }
]

/**
 * Trouble and Chaos (issue 14): the production stack under account pacing, so no call goes to a
 * window known to be closed and each window's calls are spread over it (a window filled in a burst
 * leaves later callers waiting for the rest of it: Trouble's p99 was its 1 s window).
 */
const PACED_STACK = [{ name: "account-pacing" }, ...PRODUCTION_STACK]

/** The README's example config: account pacing › health-aware (3) › round robin, its retry and deadlines. */
const README_GATEWAY = {
  strategy: [
    { name: "account-pacing" },
    { name: "health-aware", failureThreshold: 3 },
    { name: "round-robin" }
  ],
  retry: { maxAttempts: 4, baseDelayMs: 25, maxDelayMs: 2000 },
  deadlines: {
    keyWaitMs: 30000,
    requestMs: 60000,
    headersMs: 15000,
    bodyMs: 30000,
    bodyIdleMs: 300000,
    drainMs: 15000
  },
  bodyLimitBytes: 1048576
}

export const specs = (quick: boolean): ReadonlyArray<Spec> => {
  const fromScenario = (
    s: Scenarios.Scenario,
    boundMs: number,
    strategy: ReadonlyArray<Record<string, unknown>> = PRODUCTION_STACK
  ): Spec => ({
    name: s.name,
    description: s.description,
    sim: s.config,
    model: s.model,
    requests: quick ? Math.round(s.requests / 5) : s.requests,
    concurrency: s.concurrency,
    rounds: 1,
    boundMs,
    admittedPerSecond: s.admittedPerSecond,
    apart: false,
    gateway: { strategy }
  })
  return [
    fromScenario(Scenarios.trouble(), 60_000, PACED_STACK),
    // Chaos's windows admit 130/s: 10,000 requests need at least 77 s, so its bound is 120 s (it
    // was 60 s, which left thousands unfinished whatever the gateway did). Each account is paced.
    fromScenario(Scenarios.chaos(), 120_000, PACED_STACK),
    {
      name: "overload",
      description:
        "the README's example gateway config (account pacing › health-aware › round robin) over the demo pool; all requests at once, 3 rounds",
      sim: Simulator.demoPool(42),
      model: "openai/gpt-4o-mini",
      requests: quick ? 2_000 : 10_000,
      concurrency: quick ? 2_000 : 10_000,
      rounds: quick ? 1 : ROUNDS,
      boundMs: 30_000,
      admittedPerSecond: null,
      // 10,000 sockets at once from the load generator: not in the gateway's process (issue 14).
      apart: true,
      gateway: README_GATEWAY
    }
  ]
}
