/**
 * What the client gets when the balancer gives up on a request. The caller's own problem (a bad
 * body, an unknown model) is its answer, and so is an upstream outage (a 429 or 5xx, scrubbed); a
 * key's problem (401, 402, a key limit) never is: the gateway answers with its own 503 naming why
 * no key could serve and when the first one comes back. Every `Retry-After` it sends is its own,
 * bounded.
 */
import type * as Balancer from "@or-balancer/core/Balancer"
import type * as KeyPool from "@or-balancer/core/KeyPool"
import type * as KeySelector from "@or-balancer/core/KeySelector"
import type * as StateStore from "@or-balancer/core/StateStore"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Protocol from "@or-balancer/http/Protocol"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { errorBody, header1, type Outcome, retryAfterHeader } from "./respond.js"
import type { Failed } from "./upstream.js"

/** A key's own problem: never the caller's answer. */
const isKeyProblem = (e: UpstreamError.UpstreamError): boolean =>
  e._tag === "Unauthorized" || e._tag === "InsufficientCredits"

/** Why an attempt's key could not serve, in words a caller can act on. */
const WHY: Readonly<Record<string, string>> = {
  Unauthorized: "a key was refused by OpenRouter (invalid or revoked)",
  InsufficientCredits: "a key is out of credit or at its limit",
  RateLimited: "a key or its account is rate limited (or has too much spend in flight)",
  ServerError: "the upstream failed",
  Timeout: "the upstream timed out",
  Transport: "the upstream could not be reached",
  InvalidResponse: "the upstream answered with a broken body"
}

/** The earliest end, after `now`, of a Retry-After cooldown or a health ejection. */
const firstBack = (balancer: Balancer.Service, now: number) =>
  Effect.gen(function* () {
    let first: number | undefined
    for (const c of yield* balancer.cooldowns)
      if (c.until > now && (first === undefined || c.until < first)) first = c.until
    for (const h of (yield* HealthAware.status()).keys) {
      if (h.until !== undefined && h.until > now && (first === undefined || h.until < first)) first = h.until
    }
    return first
  })

/**
 * The answer to a request the balancer gave up on. `failed` is the request's latest attempt's
 * failure (the last in `AllAttemptsFailed`): with the upstream's own answer when it gave one.
 */
export const failureAnswer = (
  balancer: Balancer.Service,
  e: UpstreamError.UpstreamError | Balancer.AllAttemptsFailed | KeySelector.NoKeyAvailable,
  failed: Failed | undefined
): Effect.Effect<Outcome, never, KeyPool.KeyPool | StateStore.StateStore> =>
  Effect.gen(function* () {
    const headers: Record<string, string> = { "content-type": "application/json" }
    // Every key closed by its 401: a key's problem, named as one.
    if (e._tag === "NoKeyAvailable" && e.reason === "revoked")
      return yield* keysUnavailable(balancer, e, headers)
    if (e._tag === "NoKeyAvailable") {
      const status = e.reason === "model" ? 400 : 503
      retryAfterHeader(e.retryAfter, headers)
      return {
        _tag: "Error",
        status,
        headers,
        body: errorBody(status, e.message, { reason: e.reason })
      } as const
    }
    const last: UpstreamError.UpstreamError | undefined =
      e._tag === "AllAttemptsFailed" ? e.attempts[e.attempts.length - 1]?.error : e
    // A 402 for spend in flight reads as a short rate limit, but is still a 402: never forwarded.
    const status = failed?.answer?.status
    if ((last !== undefined && isKeyProblem(last)) || status === 401 || status === 402)
      return yield* keysUnavailable(balancer, e, headers)
    // Retry-After: the balancer's own (the pool is cooling), else the earliest cooldown, else the
    // upstream's (as the protocol read it once, into the error, where the cooldown came from too).
    let wait = e._tag === "AllAttemptsFailed" ? e.retryAfter : undefined
    if (wait === undefined && e._tag === "AllAttemptsFailed") {
      const cooling = yield* balancer.cooldowns
      if (cooling.length > 0) {
        const now = yield* Clock.currentTimeMillis
        const until = Math.min(...cooling.map((c) => c.until))
        wait = Duration.millis(Math.max(0, until - now))
      }
    }
    if (wait === undefined && last !== undefined) {
      const upstream = UpstreamError.retryAfterOf(last)
      if (upstream._tag === "Some") wait = upstream.value
    }
    retryAfterHeader(wait, headers)
    const answer = failed?.answer
    if (answer !== undefined) {
      const ct = header1(answer.headers["content-type"])
      if (ct !== undefined) headers["content-type"] = ct
      return { _tag: "Error", status: answer.status, headers, body: Protocol.scrub(answer.text) } as const
    }
    // An upstream that never answered is the gateway's 504 (a 408 would blame the caller).
    const own = last === undefined ? 502 : last._tag === "Timeout" ? 504 : UpstreamError.statusOf(last)
    return {
      _tag: "Error",
      status: own,
      headers,
      body: errorBody(own, Protocol.scrub(last?.message ?? e.message), {
        error_type: last?._tag ?? e._tag,
        // What was tried: key ids and error tags, never a secret.
        ...(e._tag === "AllAttemptsFailed"
          ? { attempts: e.attempts.map((a) => ({ key: a.keyId, error: a.error._tag })) }
          : {})
      })
    } as const
  })

/** The gateway's own 503 when the last key tried could not serve for a problem of its own. */
const keysUnavailable = (
  balancer: Balancer.Service,
  e: UpstreamError.UpstreamError | Balancer.AllAttemptsFailed | KeySelector.NoKeyAvailable,
  headers: Record<string, string>
) =>
  Effect.gen(function* () {
    const tags =
      e._tag === "AllAttemptsFailed"
        ? e.attempts.map((a) => a.error._tag)
        : e._tag === "NoKeyAvailable"
          ? ["Unauthorized"]
          : [e._tag]
    const reasons = [...new Set(tags.map((t) => WHY[t] ?? t))]
    const now = yield* Clock.currentTimeMillis
    const back = yield* firstBack(balancer, now)
    const wait = back === undefined ? undefined : Duration.millis(back - now)
    retryAfterHeader(wait, headers)
    const when =
      back === undefined
        ? "no key is known to come back soon"
        : `the first key may be back at ${new Date(back).toISOString()} (Retry-After: ${headers["retry-after"]} s)`
    return {
      _tag: "Error",
      status: 503,
      headers,
      body: JSON.stringify({
        error: {
          code: 503,
          message: `no key could serve this request: ${reasons.join("; ")}; ${when}`,
          type: "service_unavailable",
          metadata: {
            reason: "keys_unavailable",
            attempts: tags,
            first_key_back_at: back === undefined ? null : new Date(back).toISOString()
          }
        }
      })
    } as const
  })
