/**
 * One paid request (chat, completions, embeddings, responses) from arrival to answer: the key,
 * the body, the model, the account's rate windows, credit, then the key's next fault after its
 * latency. Every route shares this path, so each gets the same limits and faults; a route only
 * says how its body is read and how its answer looks.
 */
import type * as http from "node:http"
import * as Faults from "./faults.js"
import * as Ledger from "./ledger.js"
import type { Price } from "./model.js"
import { costOf, PROVIDER, sampleLatency, toUsd } from "./model.js"
import * as RateLimit from "./rateLimit.js"
import type { KeyState, Sim } from "./state.js"
import { disabled, now, record, see } from "./state.js"
import { bearer, errorBody, isRecord, sendError, sendJson } from "./wire.js"

/** What a route read from a valid body. */
export interface Parsed {
  readonly model: string
  readonly promptTokens: number
  readonly completionTokens: number
  readonly stream: boolean
  /** Route-specific input (e.g. the texts to embed). */
  readonly payload?: unknown
}

/** A request that passed every check, about to be answered. */
export interface Admitted extends Ledger.Debit {
  readonly payload: unknown
}

/**
 * How a streamed answer goes wrong: not at all, in-band after some content (`midstream`), with
 * the in-band error as the first event after the 200 headers (`first`), or by losing its
 * connection after some content (`cut`).
 */
export type Failure = "none" | "midstream" | "first" | "cut"

/** The content pieces sent before a stream fails (all of them when it does not). */
export const sentPieces = (all: Array<string>, failure: Failure): Array<string> =>
  failure === "none" ? all : failure === "first" ? [] : all.slice(0, Math.ceil(all.length / 2))

/** Whether the stream ends with an in-band error event. */
export const inBand = (failure: Failure): boolean => failure === "midstream" || failure === "first"

export interface Route {
  readonly name: string
  /** Reads a JSON object body: what to answer, or the message of a 400. */
  readonly parse: (sim: Sim, body: Record<string, unknown>) => Parsed | string
  /** Writes an answer (a stream may fail in-band, unbilled) and bills it once delivered. */
  readonly answer: (sim: Sim, res: http.ServerResponse, a: Admitted, slow: boolean, failure: Failure) => void
}

export const handle = (sim: Sim, route: Route, req: http.IncomingMessage, res: http.ServerResponse): void => {
  const k = sim.bySecret.get(bearer(req.headers.authorization) ?? "")
  const g = sim.global
  g.requests++
  g.byRoute[route.name] = (g.byRoute[route.name] ?? 0) + 1
  see(sim, route.name, k, req.headers)
  if (++g.inFlight > g.maxInFlight) g.maxInFlight = g.inFlight
  if (k !== undefined) {
    k.requests++
    if (++k.inFlight > k.maxInFlight) k.maxInFlight = k.inFlight
  }
  // The spend this request holds in its account's in-flight budget, given back when it ends.
  const hold = { cost: 0 }
  res.once("close", () => {
    g.inFlight--
    if (k !== undefined) {
      k.inFlight--
      k.account.inFlightCost -= hold.cost
    }
  })
  const chunks: Array<Buffer> = []
  req.on("data", (c: Buffer) => chunks.push(c))
  req.once("end", () =>
    arrive(
      sim,
      route,
      req,
      res,
      k,
      chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8"),
      hold
    )
  )
}

const arrive = (
  sim: Sim,
  route: Route,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  k: KeyState | undefined,
  raw: string,
  hold: { cost: number }
): void => {
  if (k === undefined) {
    sim.global.unauthenticated++
    record(sim, undefined, "401")
    return sendError(
      res,
      401,
      req.headers.authorization === undefined ? "No auth credentials found" : "User not found.",
      "authentication"
    )
  }
  const why = disabled(sim, k)
  if (why !== undefined) {
    record(sim, k, "401")
    return sendError(res, 401, why, "authentication")
  }
  let body: unknown
  try {
    body = JSON.parse(raw)
  } catch {
    record(sim, k, "400")
    return sendError(res, 400, "Invalid JSON in request body", undefined)
  }
  const parsed = isRecord(body) ? route.parse(sim, body) : "Request body must be a JSON object"
  if (typeof parsed === "string") {
    record(sim, k, "400")
    return sendError(res, 400, parsed, undefined)
  }
  const model = parsed.model
  const price = sim.settings.models.get(model)
  if (price === undefined) {
    record(sim, k, "400")
    return sendError(res, 400, `${model} is not a valid model ID`, "model_not_found", undefined, { model })
  }

  const at = now(sim)
  const acc = k.account
  acc.requests++
  const limited = RateLimit.admit(acc, price.free, at)
  if (limited !== undefined) {
    acc.rateLimited++
    record(sim, k, "429")
    return sendError(res, 429, limited.message, "rate_limit_exceeded", RateLimit.headers(limited, at))
  }

  const cost = costOf(price, parsed.promptTokens, parsed.completionTokens)
  const refused = Ledger.refusal(k, cost, costOf(price, parsed.promptTokens, 0), price.completion, at)
  if (refused !== undefined) return refuse(sim, res, k, refused, parsed, price)

  // Held until the answer's connection closes (a client already gone holds nothing).
  if (!res.destroyed) {
    acc.inFlightCost += cost
    hold.cost = cost
  }
  const admitted: Admitted = {
    key: k,
    model,
    promptTokens: parsed.promptTokens,
    completionTokens: parsed.completionTokens,
    cost,
    stream: parsed.stream,
    arrivedAt: at,
    payload: parsed.payload
  }
  const kind = Faults.next(k)
  if (kind === "stall") return perform(sim, route, req, res, admitted, kind)
  const delay = sampleLatency(k.latency ?? sim.settings.latency, k.latencyRng)
  if (delay < 1) return perform(sim, route, req, res, admitted, kind)
  setTimeout(perform, delay, sim, route, req, res, admitted, kind)
}

const refuse = (
  sim: Sim,
  res: http.ServerResponse,
  k: KeyState,
  refused: Ledger.Refusal,
  parsed: Parsed,
  price: Price
): void => {
  switch (refused._tag) {
    case "Credits":
      record(sim, k, "402")
      return sendError(
        res,
        402,
        "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
        "payment_required",
        undefined,
        { limit_source: "openrouter_credits" }
      )
    case "TooHeavy":
      record(sim, k, "402")
      return sendError(
        res,
        402,
        "This request's estimated cost is larger than the account's whole in-flight budget. Lower max_tokens or add credits.",
        "payment_required",
        undefined,
        { limit_source: "openrouter_credits" }
      )
    case "InFlight":
      record(sim, k, "402")
      return Faults.inFlightRefusal(res, sim.settings.retryAfter)
    case "KeyLimit":
      if (k.keyLimitStatus === 403) {
        // The form OpenRouter's guides describe: a 403 with the budget's scope and when it resets.
        record(sim, k, "403")
        const resets = Ledger.resetsAt(k, now(sim))
        return sendError(res, 403, "Key limit exceeded", undefined, undefined, {
          limit_source: "openrouter_key_limit",
          scope: "key",
          limit_usd: toUsd(k.limit ?? 0),
          spend_usd: toUsd(k.periodUsage),
          resets_at: resets === null ? null : new Date(resets).toISOString()
        })
      }
      record(sim, k, "402")
      return sendError(
        res,
        402,
        price.completion > 0
          ? `This request requires more credits, or fewer max_tokens. You requested up to ${parsed.completionTokens} tokens, but can only afford ${refused.affordableTokens}.`
          : "This request requires more credits than the key's limit has left.",
        "payment_required",
        undefined,
        { limit_source: "openrouter_key_limit" }
      )
  }
}

const perform = (
  sim: Sim,
  route: Route,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  a: Admitted,
  kind: ReturnType<typeof Faults.next>
): void => {
  const k = a.key
  if (res.destroyed) {
    record(sim, k, "aborted")
    return
  }
  switch (kind) {
    case "ok":
      record(sim, k, "200")
      return route.answer(sim, res, a, false, "none")
    case "slow":
      record(sim, k, "200")
      return route.answer(sim, res, a, true, "none")
    case "midstream":
      if (!a.stream) return Faults.providerError(sim, res, k)
      record(sim, k, "midstream")
      return route.answer(sim, res, a, false, "midstream")
    case "cut":
      if (!a.stream) {
        record(sim, k, "reset")
        req.socket.destroy()
        return
      }
      record(sim, k, "cut")
      return route.answer(sim, res, a, false, "cut")
    case "errorfirst":
      record(sim, k, "errorfirst")
      if (a.stream) return route.answer(sim, res, a, false, "first")
      return sendJson(
        res,
        200,
        errorBody(502, "Provider returned error", "provider_unavailable", { provider_name: PROVIDER })
      )
    case "badjson":
      record(sim, k, "badjson")
      return Faults.badJson(res, a.stream)
    case "reset":
      record(sim, k, "reset")
      req.socket.destroy()
      return
    case "stall":
      // Held open until the client gives up (closing the server destroys the socket), or for
      // `stallMs` before a normal answer.
      record(sim, k, "stall")
      if (k.stallMs !== undefined) setTimeout(perform, k.stallMs, sim, route, req, res, a, "ok")
      return
    default:
      return Faults.fail(sim, res, k, a.model, kind)
  }
}
