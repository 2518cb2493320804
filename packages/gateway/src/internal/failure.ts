/** What the client gets when the balancer gives up on a request. */
import type * as Balancer from "@or-balancer/core/Balancer"
import type * as KeySelector from "@or-balancer/core/KeySelector"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Protocol from "@or-balancer/http/Protocol"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { errorBody, header1, type Outcome, retryAfterHeader } from "./respond.js"
import type { Failed } from "./upstream.js"

/**
 * The answer to a request the balancer gave up on. `failed` is the request's latest attempt's
 * failure (the last in `AllAttemptsFailed`): with the upstream's own answer when it gave one.
 */
export const failureAnswer = (
  balancer: Balancer.Service,
  e: UpstreamError.UpstreamError | Balancer.AllAttemptsFailed | KeySelector.NoKeyAvailable,
  failed: Failed | undefined
): Effect.Effect<Outcome> =>
  Effect.gen(function* () {
    const headers: Record<string, string> = { "content-type": "application/json" }
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
    const status = last === undefined ? 502 : UpstreamError.statusOf(last)
    return {
      _tag: "Error",
      status,
      headers,
      body: errorBody(status, Protocol.scrub(last?.message ?? e.message), {
        error_type: last?._tag ?? e._tag
      })
    } as const
  })
