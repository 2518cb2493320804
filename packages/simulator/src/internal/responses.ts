/**
 * `POST /api/v1/responses`: OpenRouter's Responses API (beta, stateless). A plain answer is a
 * `response` object; a streamed one is the `response.*` event sequence (`created`,
 * `in_progress`, `output_item.added`, `content_part.added`, `output_text.delta`…,
 * `output_text.done`, `content_part.done`, `output_item.done`, `completed` with `usage.cost`),
 * each as `event:` and `data:` lines. A mid-stream failure is an `error` event then
 * `response.failed`.
 */
import type * as http from "node:http"
import { contentOf, readMaxTokens, readModel, readStream } from "./chat.js"
import { deliver, deliverStream, pieces, SSE_HEADERS } from "./delivery.js"
import type { Admitted, Failure, Parsed, Route } from "./inference.js"
import { inBand, sentPieces } from "./inference.js"
import * as Ledger from "./ledger.js"
import { KEEP_ALIVE, textLength, toUsd } from "./model.js"
import type { Sim } from "./state.js"
import { generationId } from "./state.js"
import { isRecord } from "./wire.js"

interface Payload {
  readonly instructions: string | null
  readonly maxOutputTokens: number | null
}

const parse = (sim: Sim, body: Record<string, unknown>): Parsed | string => {
  const model = readModel(body.model)
  if (model === undefined) return '"model" is required and must be a string'
  const input = body.input
  let promptTokens: number
  if (typeof input === "string") promptTokens = 4 + Math.ceil(input.length / 4)
  else if (Array.isArray(input) && input.length > 0 && input.every(isRecord)) {
    let chars = 0
    for (const item of input) chars += textLength((item as { content?: unknown }).content)
    promptTokens = input.length * 4 + Math.ceil(chars / 4)
  } else return '"input" is required and must be a string or an array of input items'
  const instructions = body.instructions
  if (instructions !== undefined && instructions !== null && typeof instructions !== "string")
    return '"instructions" must be a string'
  if (typeof instructions === "string") promptTokens += Math.ceil(instructions.length / 4)
  const completionTokens = readMaxTokens(sim, body.max_output_tokens, "max_output_tokens")
  if (typeof completionTokens === "string") return completionTokens
  const stream = readStream(body.stream)
  if (typeof stream === "string") return stream
  const payload: Payload = {
    instructions: typeof instructions === "string" ? instructions : null,
    maxOutputTokens: typeof body.max_output_tokens === "number" ? body.max_output_tokens : null
  }
  return { model, promptTokens, completionTokens, stream, payload }
}

const usageOf = (a: Admitted) => ({
  input_tokens: a.promptTokens,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: a.completionTokens,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: a.promptTokens + a.completionTokens,
  cost: toUsd(a.cost)
})

const outputText = (text: string) => ({ type: "output_text", text, annotations: [], logprobs: [] })

const message = (id: string, status: string, content: ReadonlyArray<unknown>) => ({
  type: "message",
  id,
  status,
  role: "assistant",
  content
})

/** The `response` object, in any of its states. */
const response = (
  id: string,
  a: Admitted,
  status: "in_progress" | "completed" | "failed",
  output: ReadonlyArray<unknown>,
  error: unknown = null
) => {
  const p = a.payload as Payload
  return {
    id,
    object: "response",
    created_at: Math.floor(a.arrivedAt / 1000),
    status,
    error,
    incomplete_details: null,
    instructions: p.instructions,
    max_output_tokens: p.maxOutputTokens,
    model: a.model,
    output,
    parallel_tool_calls: true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: null,
    text: { format: { type: "text" } },
    tool_choice: "auto",
    tools: [],
    top_p: null,
    truncation: "disabled",
    metadata: {},
    user: null,
    usage: status === "completed" ? usageOf(a) : null
  }
}

const answer = (sim: Sim, res: http.ServerResponse, a: Admitted, slow: boolean, failure: Failure): void => {
  const gen = generationId(sim)
  const id = `resp_${gen.slice(4)}`
  const itemId = `msg_${gen.slice(4)}`
  const content = contentOf(a)
  const bill = () => Ledger.debit(sim, a, gen)
  const done = message(itemId, "completed", [outputText(content)])
  if (!a.stream) {
    const body = JSON.stringify(response(id, a, "completed", [done]))
    deliver(sim, res, { "content-type": "application/json", "x-generation-id": gen }, [body], 0, slow, bill)
    return
  }
  const parts: Array<string> = []
  for (let i = 0; i < sim.settings.keepAlives; i++) parts.push(KEEP_ALIVE)
  let sequence = 0
  const event = (type: string, fields: object) =>
    parts.push(
      `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence++, ...fields })}\n\n`
    )
  const at = { output_index: 0, content_index: 0, item_id: itemId }
  if (failure !== "first") {
    event("response.created", { response: response(id, a, "in_progress", []) })
    event("response.in_progress", { response: response(id, a, "in_progress", []) })
    event("response.output_item.added", { output_index: 0, item: message(itemId, "in_progress", []) })
    event("response.content_part.added", { ...at, part: outputText("") })
  }
  for (const delta of sentPieces(pieces(content, sim.settings.chunkCount), failure))
    event("response.output_text.delta", { ...at, delta, logprobs: [] })
  if (inBand(failure)) {
    const message = "Provider disconnected mid-stream"
    event("error", { code: "provider_unavailable", message, param: null })
    event("response.failed", {
      response: response(id, a, "failed", [], { code: "server_error", message })
    })
  } else if (failure === "none") {
    event("response.output_text.done", { ...at, text: content, logprobs: [] })
    event("response.content_part.done", { ...at, part: outputText(content) })
    event("response.output_item.done", { output_index: 0, item: done })
    event("response.completed", { response: response(id, a, "completed", [done]) })
  }
  const headers = { ...SSE_HEADERS, "x-generation-id": gen }
  deliverStream(sim, res, headers, parts, slow, failure, bill)
}

export const route: Route = { name: "responses", parse, answer }
