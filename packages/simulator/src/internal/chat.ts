/**
 * `POST /api/v1/chat/completions`: the OpenAI-compatible body and answer, plain or streamed as
 * SSE chunks (keep-alive comments first, `usage` with `cost` on the last chunk, then
 * `[DONE]`; a mid-stream failure is OpenRouter's in-band error chunk with `finish_reason: "error"`).
 */
import type * as http from "node:http"
import { deliver, deliverStream, pieces, SSE_HEADERS } from "./delivery.js"
import type { Admitted, Failure, Parsed, Route } from "./inference.js"
import { inBand, sentPieces } from "./inference.js"
import * as Ledger from "./ledger.js"
import { FILLER, KEEP_ALIVE, PROVIDER, textLength, toUsd } from "./model.js"
import type { Sim } from "./state.js"
import { generationId } from "./state.js"
import { isRecord } from "./wire.js"

/** The answer's text: as many characters as about `completionTokens` tokens. */
export const contentOf = (a: Admitted): string => FILLER.slice(0, Math.min(a.completionTokens, 512) * 4 - 1)

export const usageOf = (a: Admitted) => ({
  prompt_tokens: a.promptTokens,
  completion_tokens: a.completionTokens,
  total_tokens: a.promptTokens + a.completionTokens,
  cost: toUsd(a.cost),
  is_byok: false,
  prompt_tokens_details: { cached_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0 }
})

/** `max_tokens` (or its newer names): absent, or a positive integer, else the 400's message. */
export const readMaxTokens = (sim: Sim, value: unknown, name = "max_tokens"): number | string => {
  if (value === undefined || value === null) return sim.settings.defaultCompletionTokens
  return Number.isInteger(value) && (value as number) > 0
    ? (value as number)
    : `"${name}" must be a positive integer`
}

export const readStream = (value: unknown): boolean | string =>
  value === undefined || value === null
    ? false
    : typeof value === "boolean"
      ? value
      : '"stream" must be a boolean'

export const readModel = (value: unknown): string | undefined =>
  typeof value === "string" && value.length > 0 ? value : undefined

/** The in-band error OpenRouter sends when a provider fails after the first byte. */
export const midstreamError = {
  code: 502,
  message: "Provider disconnected mid-stream",
  metadata: { error_type: "provider_unavailable", provider_name: PROVIDER }
}

const parse = (sim: Sim, body: Record<string, unknown>): Parsed | string => {
  const model = readModel(body.model)
  if (model === undefined) return '"model" is required and must be a string'
  const messages = body.messages
  if (!Array.isArray(messages) || messages.length === 0)
    return '"messages" is required and must be a non-empty array'
  let promptChars = 0
  for (const m of messages) {
    if (!isRecord(m) || typeof m.role !== "string")
      return 'each of "messages" must be an object with a "role"'
    promptChars += textLength(m.content)
  }
  const completionTokens = readMaxTokens(sim, body.max_tokens ?? body.max_completion_tokens)
  if (typeof completionTokens === "string") return completionTokens
  const stream = readStream(body.stream)
  if (typeof stream === "string") return stream
  return { model, promptTokens: messages.length * 4 + Math.ceil(promptChars / 4), completionTokens, stream }
}

// One SSE chunk event. `error` and `usage` are left out of the JSON when undefined, and the
// literal's key order is the order on the wire.
const chunkEvent = (
  id: string,
  created: number,
  model: string,
  choices: ReadonlyArray<unknown>,
  error?: unknown,
  usage?: unknown
): string =>
  `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, provider: PROVIDER, error, choices, usage })}\n\n`

const answer = (sim: Sim, res: http.ServerResponse, a: Admitted, slow: boolean, failure: Failure): void => {
  const id = generationId(sim)
  const created = Math.floor(a.arrivedAt / 1000)
  const content = contentOf(a)
  const bill = () => Ledger.debit(sim, a, id)
  if (!a.stream) {
    const body = JSON.stringify({
      id,
      object: "chat.completion",
      created,
      model: a.model,
      provider: PROVIDER,
      // OpenRouter sends it (null for most providers); @openrouter/sdk's schema requires the field.
      system_fingerprint: null,
      choices: [
        {
          index: 0,
          logprobs: null,
          finish_reason: "stop",
          native_finish_reason: "stop",
          message: { role: "assistant", content, refusal: null }
        }
      ],
      usage: usageOf(a)
    })
    deliver(sim, res, { "content-type": "application/json", "x-generation-id": id }, [body], 0, slow, bill)
    return
  }
  const parts: Array<string> = []
  for (let i = 0; i < sim.settings.keepAlives; i++) parts.push(KEEP_ALIVE)
  const all = pieces(content, sim.settings.chunkCount)
  const sent = sentPieces(all, failure)
  for (const piece of sent) {
    parts.push(
      chunkEvent(id, created, a.model, [
        {
          index: 0,
          delta: { role: "assistant", content: piece },
          finish_reason: null,
          native_finish_reason: null,
          logprobs: null
        }
      ])
    )
  }
  if (inBand(failure)) {
    parts.push(
      chunkEvent(
        id,
        created,
        a.model,
        [{ index: 0, delta: { content: "" }, finish_reason: "error", native_finish_reason: "error" }],
        midstreamError
      )
    )
  } else if (failure === "none") {
    parts.push(
      chunkEvent(
        id,
        created,
        a.model,
        [
          {
            index: 0,
            delta: { role: "assistant", content: "" },
            finish_reason: "stop",
            native_finish_reason: "stop",
            logprobs: null
          }
        ],
        undefined,
        usageOf(a)
      ),
      "data: [DONE]\n\n"
    )
  }
  deliverStream(sim, res, { ...SSE_HEADERS, "x-generation-id": id }, parts, slow, failure, bill)
}

export const route: Route = { name: "chat", parse, answer }
