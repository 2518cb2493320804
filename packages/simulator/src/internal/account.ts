/**
 * The endpoints that cost no inference: `GET /key` (and its legacy alias `/auth/key`),
 * `GET /credits` (management keys only), `GET /generation?id=`, and the public model list
 * `GET /models` and `GET /models/{author}/{slug}`.
 */
import type * as http from "node:http"
import type * as Simulator from "../Simulator.js"
import * as Ledger from "./ledger.js"
import { PROVIDER, toUsd } from "./model.js"
import type { KeyState, Sim } from "./state.js"
import { disabled, now } from "./state.js"
import { bearer, sendError, sendJson } from "./wire.js"

/** The caller's key, or an answer already sent. */
const authenticate = (
  sim: Sim,
  req: http.IncomingMessage,
  res: http.ServerResponse
): KeyState | undefined => {
  const header = req.headers.authorization
  const k = sim.bySecret.get(bearer(header) ?? "")
  if (k === undefined) {
    sendError(
      res,
      401,
      header === undefined ? "No auth credentials found" : "User not found.",
      "authentication"
    )
    return undefined
  }
  const why = disabled(sim, k)
  if (why !== undefined) {
    sendError(res, 401, why, "authentication")
    return undefined
  }
  return k
}

const usd = (nano: number | null): number | null => (nano === null ? null : toUsd(nano))

export const keyInfo = (sim: Sim, req: http.IncomingMessage, res: http.ServerResponse): void => {
  const k = authenticate(sim, req, res)
  if (k === undefined) return
  k.keyLookups++
  Ledger.roll(k, now(sim))
  const a = k.account
  const ofPeriod = (period: "daily" | "weekly" | "monthly") =>
    toUsd(k.limitReset === period ? k.periodUsage : k.usage)
  sendJson(
    res,
    200,
    JSON.stringify({
      data: {
        label: k.label,
        limit: usd(k.limit),
        limit_remaining: usd(Ledger.remaining(k)),
        limit_reset: k.limitReset,
        usage: toUsd(k.usage),
        usage_daily: ofPeriod("daily"),
        usage_weekly: ofPeriod("weekly"),
        usage_monthly: ofPeriod("monthly"),
        byok_usage: 0,
        is_free_tier: k.isFreeTier,
        is_provisioning_key: k.management,
        is_management_key: k.management,
        expires_at: k.expiresAt,
        rate_limit: { requests: a.rpm ?? -1, interval: `${Math.round(a.windowMs / 1000)}s` }
      }
    })
  )
}

export const credits = (sim: Sim, req: http.IncomingMessage, res: http.ServerResponse): void => {
  const k = authenticate(sim, req, res)
  if (k === undefined) return
  if (!k.management) return sendError(res, 403, "Only management keys can fetch credits", "permission_denied")
  sendJson(
    res,
    200,
    JSON.stringify({
      data: { total_credits: toUsd(Ledger.totalCredits(sim, k.account)), total_usage: toUsd(k.account.usage) }
    })
  )
}

export const generation = (
  sim: Sim,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  query: string
): void => {
  const k = authenticate(sim, req, res)
  if (k === undefined) return
  const id = new URLSearchParams(query).get("id")
  if (id === null || id === "") return sendError(res, 400, '"id" query parameter is required', undefined)
  const g = sim.generations.get(id)
  if (g === undefined || g.account !== k.account.name)
    return sendError(res, 404, `Generation ${id} not found`, undefined)
  const cost = toUsd(g.cost)
  sendJson(
    res,
    200,
    JSON.stringify({
      data: {
        id: g.id,
        total_cost: cost,
        usage: cost,
        created_at: g.createdAt,
        model: g.model,
        is_byok: false,
        provider_name: PROVIDER,
        streamed: g.streamed,
        cancelled: false,
        latency: g.latencyMs,
        generation_time: g.latencyMs,
        finish_reason: "stop",
        native_finish_reason: "stop",
        tokens_prompt: g.promptTokens,
        tokens_completion: g.completionTokens,
        native_tokens_prompt: g.promptTokens,
        native_tokens_completion: g.completionTokens,
        native_tokens_reasoning: 0
      }
    })
  )
}

const price = (perMillion: number): string => (perMillion / 1e6).toFixed(12).replace(/\.?0+$/, "")

const describe = (m: Simulator.ModelConfig) => {
  const embedding = m.id.includes("embedding")
  return {
    id: m.id,
    canonical_slug: m.id,
    name: m.id,
    created: 1_700_000_000,
    description: `Simulated ${m.id}`,
    context_length: m.contextLength ?? 128_000,
    architecture: {
      modality: embedding ? "text->embeddings" : "text->text",
      input_modalities: ["text"],
      output_modalities: [embedding ? "embeddings" : "text"]
    },
    pricing: {
      prompt: price(m.promptPrice),
      completion: price(m.completionPrice),
      request: (m.requestPrice ?? 0).toFixed(12).replace(/\.?0+$/, ""),
      image: "0"
    },
    top_provider: {
      context_length: m.contextLength ?? 128_000,
      max_completion_tokens: null,
      is_moderated: false
    },
    supported_parameters: ["max_tokens", "temperature", "stream"]
  }
}

/** OpenRouter's `GET /models/{author}/{slug}/endpoints`: the model and its one simulated provider. */
const endpoints = (m: Simulator.ModelConfig) => {
  const { architecture, created, description, id, name, pricing, top_provider } = describe(m)
  return {
    data: {
      id,
      name,
      created,
      description,
      architecture,
      endpoints: [
        {
          name: `${PROVIDER} | ${id}`,
          model_name: name,
          context_length: top_provider.context_length,
          pricing,
          provider_name: PROVIDER,
          tag: "simprovider",
          quantization: null,
          max_completion_tokens: null,
          max_prompt_tokens: null,
          supported_parameters: ["max_tokens", "temperature", "stream"],
          status: 0,
          uptime_last_30m: 100
        }
      ]
    }
  }
}

/**
 * The public catalogue, no key needed: `GET /models`, `GET /models/{author}/{slug}` and
 * `GET /models/{author}/{slug}/endpoints`.
 */
export const makeModels = (sim: Sim) => {
  const list = JSON.stringify({ data: sim.settings.modelList.map(describe) })
  // One model as OpenAI's `models.retrieve` reads it (`object`, `owned_by`), with OpenRouter's fields.
  const one = new Map<string, string>()
  for (const m of sim.settings.modelList) {
    one.set(m.id, JSON.stringify({ ...describe(m), object: "model", owned_by: m.id.split("/")[0] ?? "" }))
    one.set(`${m.id}/endpoints`, JSON.stringify(endpoints(m)))
  }
  return {
    list: (res: http.ServerResponse): void => sendJson(res, 200, list),
    one: (res: http.ServerResponse, id: string): void => {
      const body = one.get(id)
      if (body === undefined) return sendError(res, 404, `Model ${id} not found`, undefined)
      sendJson(res, 200, body)
    }
  }
}
