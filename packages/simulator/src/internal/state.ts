/**
 * The simulator's mutable world: settings compiled from the config, accounts and keys, the
 * generations kept for `GET /generation`, and the global counters. Plain objects, no Effect: the
 * handler touches them synchronously on every request.
 */
import * as Redacted from "effect/Redacted"
import type * as Simulator from "../Simulator.js"
import * as Model from "./model.js"
import { deriveSeed, mulberry32 } from "./prng.js"

export interface AccountState {
  readonly name: string
  rpm: number | null
  windowMs: number
  /** Nano-dollars bought; undefined: not enforced, and `/credits` reports the sum of the caps. */
  totalCredits: number | undefined
  /** All-time spend of its keys, nano-dollars. */
  usage: number
  /** Cost of the admitted requests still running, nano-dollars. */
  inFlightCost: number
  inFlightBudget: number | null
  windowStart: number
  count: number
  freePerMinute: number | null
  freePerDay: number | null | undefined
  freeWindowStart: number
  freeCount: number
  freeDay: number
  freeDayCount: number
  requests: number
  rateLimited: number
}

export interface KeyState {
  readonly label: string
  readonly secret: string
  readonly account: AccountState
  /** Nano-dollars; null: unlimited. */
  limit: number | null
  limitReset: "daily" | "weekly" | "monthly" | null
  /** All-time spend, nano-dollars. */
  usage: number
  /** Spend in the current `limitReset` period (all-time when there is none): what the cap limits. */
  periodUsage: number
  periodStart: number
  resetPeriodMs: number | undefined
  revoked: boolean
  management: boolean
  keyLimitStatus: 402 | 403
  readonly isFreeTier: boolean
  readonly expiresAt: string | null
  /** `expiresAt` in epoch ms (Infinity: never). */
  readonly expiresAtMs: number
  script: ReadonlyArray<Simulator.FaultKind> | undefined
  loop: boolean
  scriptPos: number
  rates: Model.CompiledRates | undefined
  latency: Simulator.Latency | undefined
  stallMs: number | undefined
  readonly faultRng: () => number
  readonly latencyRng: () => number
  requests: number
  byOutcome: Record<string, number>
  inFlight: number
  maxInFlight: number
  spend: number
  overspend: number
  overspentRequests: number
  keyLookups: number
}

export interface Generation {
  readonly id: string
  readonly account: string
  readonly model: string
  /** Nano-dollars. */
  readonly cost: number
  readonly promptTokens: number
  readonly completionTokens: number
  readonly streamed: boolean
  readonly createdAt: string
  readonly latencyMs: number
}

export interface Settings {
  readonly seed: number
  readonly modelList: ReadonlyArray<Simulator.ModelConfig>
  readonly models: Map<string, Model.Price>
  readonly defaultCompletionTokens: number
  readonly latency: Simulator.Latency
  readonly faults: Simulator.Faults | undefined
  readonly keepAlives: number
  readonly chunkCount: number
  readonly chunkIntervalMs: number
  readonly slowBytes: number
  readonly slowIntervalMs: number
  readonly retryAfter: string
  readonly generationsKept: number
  readonly requestsKept: number
  readonly genPrefix: string
  readonly keyLimitStatus: 402 | 403
}

export interface Sim {
  readonly settings: Settings
  readonly accounts: Map<string, AccountState>
  readonly keys: Array<KeyState>
  readonly bySecret: Map<string, KeyState>
  readonly byLabel: Map<string, KeyState>
  readonly generations: Map<string, Generation>
  /** A ring of the recent inference requests; `seenNext` is where the next one goes. */
  readonly seen: Array<Simulator.SeenRequest>
  seenNext: number
  readonly global: {
    requests: number
    byOutcome: Record<string, number>
    byRoute: Record<string, number>
    inFlight: number
    maxInFlight: number
    unauthenticated: number
    spend: number
    overspend: number
    generationCounter: number
  }
  /** Added to the wall clock, so a test can jump to a UTC midnight. */
  clockOffsetMs: number
}

export const now = (sim: Sim): number => Date.now() + sim.clockOffsetMs

export const make = (config: Simulator.Config): Sim => {
  const seed = config.seed ?? 1
  const modelList = config.models ?? Model.defaultModels
  const latency: Simulator.Latency = config.latency ?? { kind: "fixed", ms: 0 }
  Model.checkLatency(latency, "latency")
  const sim: Sim = {
    settings: {
      seed,
      modelList,
      models: Model.compileModels(modelList),
      defaultCompletionTokens: config.defaultCompletionTokens ?? 32,
      latency,
      faults: config.faults,
      keepAlives: config.stream?.keepAlives ?? 1,
      chunkCount: config.stream?.chunks ?? 4,
      chunkIntervalMs: config.stream?.chunkIntervalMs ?? 0,
      slowBytes: config.slowBody?.bytesPerWrite ?? 16,
      slowIntervalMs: config.slowBody?.intervalMs ?? 5,
      retryAfter: String(config.retryAfterSeconds ?? 1),
      generationsKept: config.generationsKept ?? 10_000,
      requestsKept: config.requestsKept ?? 1_000,
      genPrefix: `gen-sim${(deriveSeed(seed, "gen") & 0xffff).toString(16).padStart(4, "0")}`,
      keyLimitStatus: config.keyLimitStatus ?? 402
    },
    accounts: new Map(),
    keys: [],
    bySecret: new Map(),
    byLabel: new Map(),
    generations: new Map(),
    seen: [],
    seenNext: 0,
    global: {
      requests: 0,
      byOutcome: {},
      byRoute: {},
      inFlight: 0,
      maxInFlight: 0,
      unauthenticated: 0,
      spend: 0,
      overspend: 0,
      generationCounter: 0
    },
    clockOffsetMs: 0
  }
  for (const [name, a] of Object.entries(config.accounts ?? {})) updateAccount(sim, name, a)
  for (const k of config.keys) addKey(sim, k)
  return sim
}

export const account = (sim: Sim, name: string): AccountState => {
  let a = sim.accounts.get(name)
  if (a === undefined) {
    a = {
      name,
      rpm: null,
      windowMs: 60_000,
      totalCredits: undefined,
      usage: 0,
      inFlightCost: 0,
      inFlightBudget: null,
      windowStart: 0,
      count: 0,
      freePerMinute: 20,
      freePerDay: undefined,
      freeWindowStart: 0,
      freeCount: 0,
      freeDay: 0,
      freeDayCount: 0,
      requests: 0,
      rateLimited: 0
    }
    sim.accounts.set(name, a)
  }
  return a
}

export const updateAccount = (sim: Sim, name: string, update: Simulator.AccountConfig): void => {
  const a = account(sim, name)
  if (update.rpm !== undefined) a.rpm = update.rpm
  if (update.windowMs !== undefined) a.windowMs = update.windowMs
  if (update.totalCredits !== undefined) a.totalCredits = Model.toNano(update.totalCredits)
  if (update.inFlightBudget !== undefined)
    a.inFlightBudget = update.inFlightBudget === null ? null : Model.toNano(update.inFlightBudget)
  if (update.freeRequestsPerMinute !== undefined) a.freePerMinute = update.freeRequestsPerMinute
  if (update.freeRequestsPerDay !== undefined) a.freePerDay = update.freeRequestsPerDay
}

export const applyFaults = (k: KeyState, faults: Simulator.Faults | undefined): void => {
  Model.checkLatency(faults?.latency, `key "${k.label}"`)
  k.rates = Model.compileRates(faults?.rates, `key "${k.label}"`)
  k.script = faults?.script
  k.loop = faults?.loop ?? false
  k.scriptPos = 0
  k.latency = faults?.latency
  k.stallMs = faults?.stallMs
}

export const simulatedKey = (k: KeyState): Simulator.SimulatedKey => ({
  label: k.label,
  account: k.account.name,
  secret: Redacted.make(k.secret)
})

export const addKey = (sim: Sim, input: Simulator.KeyConfig): Simulator.SimulatedKey => {
  const index = sim.keys.length
  const secret = typeof input.secret === "string" ? input.secret : Redacted.value(input.secret)
  const label = input.label ?? `key-${index}`
  if (sim.byLabel.has(label)) throw new Error(`two keys are labelled "${label}"`)
  const taken = sim.bySecret.get(secret)
  if (taken !== undefined) throw new Error(`key "${label}" has the same secret as "${taken.label}"`)
  const usage = Model.toNano(input.usage ?? 0)
  const acc = account(sim, input.account ?? "default")
  acc.usage += usage
  const seed = sim.settings.seed
  const k: KeyState = {
    label,
    secret,
    account: acc,
    limit: input.limit === undefined || input.limit === null ? null : Model.toNano(input.limit),
    limitReset: input.limitReset ?? null,
    usage,
    periodUsage: usage,
    periodStart: now(sim),
    resetPeriodMs: input.resetPeriodMs,
    revoked: input.revoked ?? false,
    management: input.management ?? false,
    keyLimitStatus: input.keyLimitStatus ?? sim.settings.keyLimitStatus,
    isFreeTier: input.isFreeTier ?? false,
    expiresAt: input.expiresAt ?? null,
    expiresAtMs: expiry(input.expiresAt, label),
    script: undefined,
    loop: false,
    scriptPos: 0,
    rates: undefined,
    latency: undefined,
    stallMs: undefined,
    faultRng: mulberry32(deriveSeed(seed, "faults", label)),
    latencyRng: mulberry32(deriveSeed(seed, "latency", label)),
    requests: 0,
    byOutcome: {},
    inFlight: 0,
    maxInFlight: 0,
    spend: 0,
    overspend: 0,
    overspentRequests: 0,
    keyLookups: 0
  }
  applyFaults(k, input.faults ?? sim.settings.faults)
  sim.keys.push(k)
  sim.bySecret.set(secret, k)
  sim.byLabel.set(label, k)
  return simulatedKey(k)
}

const expiry = (expiresAt: string | null | undefined, label: string): number => {
  if (expiresAt === undefined || expiresAt === null) return Infinity
  const ms = Date.parse(expiresAt)
  if (Number.isNaN(ms)) throw new Error(`key "${label}": expiresAt is not a date`)
  return ms
}

/** Why a key cannot authenticate (OpenRouter's 401 message), or undefined when it can. */
export const disabled = (sim: Sim, k: KeyState): string | undefined =>
  k.revoked ? "This API key is disabled" : now(sim) >= k.expiresAtMs ? "This API key has expired" : undefined

/** False when no key has that label; throws on an invalid update. */
export const updateKey = (sim: Sim, label: string, update: Simulator.KeyUpdate): boolean => {
  const k = sim.byLabel.get(label)
  if (k === undefined) return false
  if (update.faults !== undefined) applyFaults(k, update.faults)
  if (update.revoked !== undefined) k.revoked = update.revoked
  if (update.limit !== undefined) k.limit = update.limit === null ? null : Model.toNano(update.limit)
  if (update.usage !== undefined) {
    const usage = Model.toNano(update.usage)
    k.account.usage += usage - k.usage
    k.usage = usage
    k.periodUsage = usage
  }
  if (update.limitReset !== undefined || update.resetPeriodMs !== undefined) {
    if (update.limitReset !== undefined) k.limitReset = update.limitReset
    if (update.resetPeriodMs !== undefined) k.resetPeriodMs = update.resetPeriodMs
    k.periodStart = now(sim)
  }
  if (update.management !== undefined) k.management = update.management
  if (update.keyLimitStatus !== undefined) k.keyLimitStatus = update.keyLimitStatus
  return true
}

export const setScript = (
  sim: Sim,
  label: string,
  script: ReadonlyArray<Simulator.FaultKind>,
  loop: boolean | undefined
): boolean => {
  const k = sim.byLabel.get(label)
  if (k === undefined) return false
  k.script = script
  k.loop = loop ?? false
  k.scriptPos = 0
  return true
}

export const record = (sim: Sim, k: KeyState | undefined, outcome: string): void => {
  sim.global.byOutcome[outcome] = (sim.global.byOutcome[outcome] ?? 0) + 1
  if (k !== undefined) k.byOutcome[outcome] = (k.byOutcome[outcome] ?? 0) + 1
}

const SEEN_HEADERS = [
  "traceparent",
  "tracestate",
  "x-request-id",
  "http-referer",
  "x-title",
  "x-openrouter-title",
  "user-agent"
] as const

/** Remembers an inference request's route, key and pass-through headers (never its secret). */
export const see = (
  sim: Sim,
  route: string,
  k: KeyState | undefined,
  raw: Record<string, string | Array<string> | undefined>
): void => {
  const kept = sim.settings.requestsKept
  if (kept === 0) return
  const headers: Record<string, string> = {}
  for (const name of SEEN_HEADERS) {
    const value = raw[name]
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value
  }
  const entry: Simulator.SeenRequest = { route, key: k?.label, at: now(sim), headers }
  if (sim.seen.length < kept) sim.seen.push(entry)
  else sim.seen[sim.seenNext] = entry
  sim.seenNext = (sim.seenNext + 1) % kept
}

/** The recent requests, oldest first. */
export const recent = (sim: Sim): ReadonlyArray<Simulator.SeenRequest> =>
  sim.seen.length < sim.settings.requestsKept
    ? sim.seen.slice()
    : [...sim.seen.slice(sim.seenNext), ...sim.seen.slice(0, sim.seenNext)]

/** A fresh generation id, `gen-sim<seed hash>-<n>`. */
export const generationId = (sim: Sim): string =>
  `${sim.settings.genPrefix}-${++sim.global.generationCounter}`
