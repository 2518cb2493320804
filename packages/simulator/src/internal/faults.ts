/**
 * Fault scripting: which fault a key's next admitted request meets (its script first, then its
 * random rates), and the error answers of those faults that are a plain status.
 */
import type * as http from "node:http"
import type * as Simulator from "../Simulator.js"
import { PROVIDER } from "./model.js"
import type { KeyState, Sim } from "./state.js"
import { record } from "./state.js"
import { sendError } from "./wire.js"

export const next = (k: KeyState): Simulator.FaultKind => {
  const script = k.script
  if (script !== undefined && script.length > 0 && k.scriptPos < script.length) {
    const kind = script[k.scriptPos++]!
    if (k.loop && k.scriptPos === script.length) k.scriptPos = 0
    return kind
  }
  const rates = k.rates
  if (rates === undefined) return "ok"
  const u = k.faultRng()
  for (let i = 0; i < rates.length; i++) if (u < rates[i]![1]) return rates[i]![0]
  return "ok"
}

export const providerError = (sim: Sim, res: http.ServerResponse, k: KeyState): void => {
  record(sim, k, "502")
  sendError(res, 502, "Provider returned error", "provider_unavailable", undefined, {
    provider_name: PROVIDER
  })
}

/** Answers a fault that is a status code. */
export const fail = (
  sim: Sim,
  res: http.ServerResponse,
  k: KeyState,
  model: string,
  kind: "500" | "502" | "503" | "408" | "429" | "402"
): void => {
  const retryAfter = sim.settings.retryAfter
  switch (kind) {
    case "500":
      record(sim, k, "500")
      return sendError(res, 500, "Internal Server Error", "server")
    case "502":
      return providerError(sim, res, k)
    case "503":
      record(sim, k, "503")
      return sendError(
        res,
        503,
        "No provider is available for this request right now",
        "provider_overloaded",
        {
          "retry-after": retryAfter
        }
      )
    case "408":
      record(sim, k, "408")
      return sendError(res, 408, "Upstream request timed out", "timeout")
    case "429":
      // A provider's rate limit: Retry-After, but no X-RateLimit-* (those are OpenRouter's own).
      record(sim, k, "429")
      return sendError(
        res,
        429,
        `${model} is temporarily rate-limited upstream. Please retry shortly.`,
        "rate_limit_exceeded",
        { "retry-after": retryAfter },
        { provider_name: PROVIDER }
      )
    case "402":
      record(sim, k, "402")
      return inFlightRefusal(res, retryAfter)
  }
}

const BAD_BODY = "<html><body><h1>502 Bad Gateway</h1></body></html>"

/** A 200 that is not the JSON (or the SSE of JSON) it should be. */
export const badJson = (res: http.ServerResponse, stream: boolean): void => {
  const body = stream ? `data: ${BAD_BODY}\n\n` : BAD_BODY
  res.writeHead(200, {
    "content-type": stream ? "text/event-stream" : "application/json",
    "content-length": Buffer.byteLength(body)
  })
  res.end(body)
}

/** OpenRouter's short refusal when too much spend is in flight: come back after `Retry-After`. */
export const inFlightRefusal = (res: http.ServerResponse, retryAfter: string): void =>
  sendError(
    res,
    402,
    "Too many expensive requests in flight for this account. Please retry shortly.",
    "payment_required",
    { "retry-after": retryAfter },
    { limit_source: "openrouter_in_flight_budget" }
  )
