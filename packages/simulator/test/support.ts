// Simulator test support: one pool of keys (seed 99), chat and GET over loopback, polled stats.
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Simulator from "../src/Simulator.js"
import { request } from "./http.js"

export const MINI = "openai/gpt-4o-mini"
export const secret = (i: number) => Simulator.simulatedSecret(99, i)
export const messages = [{ role: "user", content: "hello world!" }] // 12 chars: 4 + 3 prompt tokens
export const PROMPT_TOKENS = 7
export const costOf = (completionTokens: number) => PROMPT_TOKENS * 0.15e-6 + completionTokens * 0.6e-6

export const chat = (sim: Simulator.Handle, key: string, body: unknown, signal?: AbortSignal) =>
  request(`${sim.baseUrl}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(signal === undefined ? {} : { signal })
  })

export const get = (sim: Simulator.Handle, path: string, key?: string) =>
  request(`${sim.baseUrl}${path}`, key === undefined ? {} : { headers: { authorization: `Bearer ${key}` } })

/** Polls the stats until `predicate` holds (bounded, so a bug fails rather than hangs). */
export const statsWhen = (sim: Simulator.Handle, predicate: (s: Simulator.Stats) => boolean) =>
  sim.stats.pipe(
    Effect.filterOrFail(predicate),
    Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo("10 seconds"))),
    Effect.orDie
  )

export const basic = (overrides: Partial<Simulator.Config> = {}): Simulator.Config => ({
  seed: 1,
  keys: [
    { label: "a", account: "one", secret: secret(0), limit: 10 },
    { label: "b", account: "one", secret: secret(1) },
    { label: "c", account: "two", secret: secret(2) },
    { label: "dead", account: "one", secret: secret(3), revoked: true },
    { label: "admin", account: "one", secret: secret(4), management: true }
  ],
  ...overrides
})
