/**
 * `POST /api/v1/embeddings`: OpenAI's shape (`data[].embedding`, as floats or, with
 * `encoding_format: "base64"`, little-endian float32 bytes as the `openai` client asks by
 * default) plus OpenRouter's `usage.cost`. Vectors are unit length and fixed by the input text.
 */
import type * as http from "node:http"
import { readModel } from "./chat.js"
import { deliver } from "./delivery.js"
import type { Admitted, Parsed, Route } from "./inference.js"
import * as Ledger from "./ledger.js"
import { PROVIDER, toUsd } from "./model.js"
import { hash32, mulberry32 } from "./prng.js"
import type { Sim } from "./state.js"
import { generationId } from "./state.js"

const DEFAULT_DIMENSIONS = 32
const MAX_DIMENSIONS = 4096

interface Payload {
  readonly inputs: ReadonlyArray<string>
  readonly dimensions: number
  readonly base64: boolean
}

const isTokens = (u: unknown): u is ReadonlyArray<number> =>
  Array.isArray(u) && u.every((t) => Number.isInteger(t))

const parse = (_sim: Sim, body: Record<string, unknown>): Parsed | string => {
  const model = readModel(body.model)
  if (model === undefined) return '"model" is required and must be a string'
  const input = body.input
  const inputs: Array<string> = []
  let tokens = 0
  const add = (one: unknown): boolean => {
    if (typeof one === "string") {
      inputs.push(one)
      tokens += Math.max(1, Math.ceil(one.length / 4))
      return true
    }
    if (isTokens(one) && one.length > 0) {
      inputs.push(one.join(","))
      tokens += one.length
      return true
    }
    return false
  }
  const ok =
    typeof input === "string" || isTokens(input)
      ? add(input)
      : Array.isArray(input) && input.length > 0 && input.every(add)
  if (!ok) return '"input" is required and must be a string, an array of strings, or token arrays'
  const dimensions = body.dimensions ?? DEFAULT_DIMENSIONS
  if (!Number.isInteger(dimensions) || (dimensions as number) < 1 || (dimensions as number) > MAX_DIMENSIONS)
    return `"dimensions" must be an integer from 1 to ${MAX_DIMENSIONS}`
  const format = body.encoding_format ?? "float"
  if (format !== "float" && format !== "base64") return '"encoding_format" must be "float" or "base64"'
  const payload: Payload = { inputs, dimensions: dimensions as number, base64: format === "base64" }
  return { model, promptTokens: tokens, completionTokens: 0, stream: false, payload }
}

const vector = (text: string, dimensions: number): Array<number> => {
  const next = mulberry32(hash32(text))
  const v: Array<number> = []
  let norm = 0
  for (let i = 0; i < dimensions; i++) {
    const x = next() * 2 - 1
    v.push(x)
    norm += x * x
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0
  // Rounded through float32, so the float and base64 forms carry the same numbers.
  return v.map((x) => Math.fround(x * scale))
}

const encode = (v: ReadonlyArray<number>): string =>
  Buffer.from(new Float32Array(v).buffer).toString("base64")

const answer = (sim: Sim, res: http.ServerResponse, a: Admitted, slow: boolean): void => {
  const p = a.payload as Payload
  const id = generationId(sim)
  const body = JSON.stringify({
    id,
    object: "list",
    data: p.inputs.map((text, index) => {
      const v = vector(text, p.dimensions)
      return { object: "embedding", index, embedding: p.base64 ? encode(v) : v }
    }),
    model: a.model,
    provider: PROVIDER,
    usage: { prompt_tokens: a.promptTokens, total_tokens: a.promptTokens, cost: toUsd(a.cost) }
  })
  deliver(sim, res, { "content-type": "application/json", "x-generation-id": id }, [body], 0, slow, () =>
    Ledger.debit(sim, a, id)
  )
}

export const route: Route = { name: "embeddings", parse, answer }
