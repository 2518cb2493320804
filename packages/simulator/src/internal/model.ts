/**
 * The simulator's static facts: the price table, latency and fault-rate compilation, and money.
 *
 * Money is kept in integer nano-dollars (1e-9 USD) so a ledger never drifts: a $0.50 cap at
 * $0.01 a request serves exactly 50 requests. Micro-dollars cannot hold a per-token price such
 * as $0.15 per million tokens; nano-dollars hold any price with up to three decimals per million
 * tokens exactly, and stay exact (below 2^53) up to about 9 million dollars. The wire shows USD.
 */
import type * as Simulator from "../Simulator.js"
import { FaultKind } from "../SimulatorConfig.js"
import { normal } from "./prng.js"

export const PROVIDER = "SimProvider"
export const KEEP_ALIVE = ": OPENROUTER PROCESSING\n\n"
export const FILLER = "sim ".repeat(512)
// Every fault kind but "ok", in the order their rates are summed.
export const RATE_ORDER = FaultKind.literals.filter((k): k is Exclude<FaultKind, "ok"> => k !== "ok")

const Z99 = 2.3263478740408408
const EPSILON = 1e-12

/** USD to integer nano-dollars. */
export const toNano = (usd: number): number => Math.round(usd * 1e9)
/** Integer nano-dollars to USD, for the wire and the stats. */
export const toUsd = (nano: number): number => nano / 1e9

/** Prices in nano-dollars: per token (possibly fractional) and per request. */
export interface Price {
  readonly prompt: number
  readonly completion: number
  readonly request: number
  readonly free: boolean
}

/** A request's cost in whole nano-dollars. */
export const costOf = (price: Price, promptTokens: number, completionTokens: number): number =>
  Math.round(promptTokens * price.prompt + completionTokens * price.completion) + price.request

export const isFreeModel = (model: string): boolean => model.endsWith(":free")

export const compileModels = (list: ReadonlyArray<Simulator.ModelConfig>): Map<string, Price> => {
  const models = new Map<string, Price>()
  for (const m of list) {
    if (models.has(m.id)) throw new Error(`model "${m.id}" is listed twice`)
    models.set(m.id, {
      prompt: m.promptPrice * 1e3,
      completion: m.completionPrice * 1e3,
      request: toNano(m.requestPrice ?? 0),
      free: isFreeModel(m.id)
    })
  }
  return models
}

export const checkLatency = (latency: Simulator.Latency | undefined, where: string): void => {
  if (latency?.kind === "uniform" && latency.max < latency.min)
    throw new Error(`${where}: latency max is below min`)
  if (latency?.kind === "lognormal" && latency.p99 < latency.median)
    throw new Error(`${where}: latency p99 is below the median`)
}

/** Cumulative thresholds in RATE_ORDER, so one uniform draw picks a fault. */
export type CompiledRates = ReadonlyArray<readonly [Simulator.FaultKind, number]>

export const compileRates = (
  rates: Simulator.FaultRates | undefined,
  where: string
): CompiledRates | undefined => {
  if (rates === undefined) return undefined
  const out: Array<readonly [Simulator.FaultKind, number]> = []
  let sum = 0
  for (const kind of RATE_ORDER) {
    const p = rates[kind]
    if (p === undefined || p === 0) continue
    sum += p
    out.push([kind, sum])
  }
  if (sum > 1 + EPSILON) throw new Error(`${where}: fault rates add up to ${sum}, more than 1`)
  return out.length === 0 ? undefined : out
}

export const sampleLatency = (latency: Simulator.Latency, next: () => number): number => {
  switch (latency.kind) {
    case "fixed":
      return latency.ms
    case "uniform":
      return latency.min + (latency.max - latency.min) * next()
    case "lognormal": {
      const mu = Math.log(latency.median)
      const sigma = (Math.log(latency.p99) - mu) / Z99
      return Math.exp(mu + sigma * normal(next))
    }
  }
}

/** Characters of text in a message content (a string or an array of parts with `text`). */
export const textLength = (content: unknown): number => {
  if (typeof content === "string") return content.length
  if (!Array.isArray(content)) return 0
  let n = 0
  for (const part of content) {
    if (typeof part === "string") n += part.length
    else if (typeof part === "object" && part !== null) {
      const text = (part as { text?: unknown; content?: unknown }).text
      if (typeof text === "string") n += text.length
      else n += textLength((part as { content?: unknown }).content)
    }
  }
  return n
}

// Kept here rather than in the public module, which imports this one.
export const defaultModels: ReadonlyArray<Simulator.ModelConfig> = [
  { id: "openai/gpt-4o-mini", promptPrice: 0.15, completionPrice: 0.6, contextLength: 128_000 },
  { id: "anthropic/claude-sonnet-4", promptPrice: 3, completionPrice: 15, contextLength: 200_000 },
  { id: "google/gemini-2.0-flash-001", promptPrice: 0.1, completionPrice: 0.4, contextLength: 1_048_576 },
  {
    id: "meta-llama/llama-3.1-8b-instruct",
    promptPrice: 0.02,
    completionPrice: 0.05,
    contextLength: 131_072
  },
  {
    id: "meta-llama/llama-3.3-70b-instruct:free",
    promptPrice: 0,
    completionPrice: 0,
    contextLength: 131_072
  },
  { id: "openai/text-embedding-3-small", promptPrice: 0.02, completionPrice: 0, contextLength: 8_192 }
]
