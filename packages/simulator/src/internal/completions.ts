/**
 * `POST /api/v1/completions`: legacy text completions (`prompt` in, `choices[].text` out),
 * plain or streamed as SSE `text_completion` chunks ending with `usage` and `[DONE]`.
 */
import type * as http from "node:http"
import { contentOf, midstreamError, readMaxTokens, readModel, readStream, usageOf } from "./chat.js"
import { deliver, deliverStream, pieces, SSE_HEADERS } from "./delivery.js"
import type { Admitted, Failure, Parsed, Route } from "./inference.js"
import { inBand, sentPieces } from "./inference.js"
import * as Ledger from "./ledger.js"
import { KEEP_ALIVE, PROVIDER } from "./model.js"
import type { Sim } from "./state.js"
import { generationId } from "./state.js"

const parse = (sim: Sim, body: Record<string, unknown>): Parsed | string => {
  const model = readModel(body.model)
  if (model === undefined) return '"model" is required and must be a string'
  const prompt = body.prompt
  let chars = 0
  if (typeof prompt === "string") chars = prompt.length
  else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => typeof p === "string"))
    for (const p of prompt) chars += (p as string).length
  else return '"prompt" is required and must be a string or an array of strings'
  const completionTokens = readMaxTokens(sim, body.max_tokens)
  if (typeof completionTokens === "string") return completionTokens
  const stream = readStream(body.stream)
  if (typeof stream === "string") return stream
  return { model, promptTokens: Math.max(1, Math.ceil(chars / 4)), completionTokens, stream }
}

const chunk = (
  id: string,
  created: number,
  model: string,
  text: string,
  finishReason: string | null,
  error?: unknown,
  usage?: unknown
): string =>
  `data: ${JSON.stringify({
    id,
    object: "text_completion",
    created,
    model,
    provider: PROVIDER,
    error,
    choices: [{ index: 0, text, finish_reason: finishReason, logprobs: null }],
    usage
  })}\n\n`

const answer = (sim: Sim, res: http.ServerResponse, a: Admitted, slow: boolean, failure: Failure): void => {
  const id = generationId(sim)
  const created = Math.floor(a.arrivedAt / 1000)
  const content = contentOf(a)
  const bill = () => Ledger.debit(sim, a, id)
  if (!a.stream) {
    const body = JSON.stringify({
      id,
      object: "text_completion",
      created,
      model: a.model,
      provider: PROVIDER,
      system_fingerprint: null,
      choices: [
        { index: 0, text: content, finish_reason: "stop", native_finish_reason: "stop", logprobs: null }
      ],
      usage: usageOf(a)
    })
    deliver(sim, res, { "content-type": "application/json", "x-generation-id": id }, [body], 0, slow, bill)
    return
  }
  const parts: Array<string> = []
  for (let i = 0; i < sim.settings.keepAlives; i++) parts.push(KEEP_ALIVE)
  const all = pieces(content, sim.settings.chunkCount)
  for (const piece of sentPieces(all, failure)) parts.push(chunk(id, created, a.model, piece, null))
  if (inBand(failure)) parts.push(chunk(id, created, a.model, "", "error", midstreamError))
  else if (failure === "none")
    parts.push(chunk(id, created, a.model, "", "stop", undefined, usageOf(a)), "data: [DONE]\n\n")
  const headers = { ...SSE_HEADERS, "x-generation-id": id }
  deliverStream(sim, res, headers, parts, slow, failure, bill)
}

export const route: Route = { name: "completions", parse, answer }
