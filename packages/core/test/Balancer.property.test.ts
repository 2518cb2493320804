import { describe, expect, it } from "@effect/vitest"
import { Balancer, UpstreamError } from "@or-balancer/core"
import { Effect, Either, Fiber, TestClock } from "effect"
import * as fc from "fast-check"
import { env, keys } from "./fixtures.js"

const errors: ReadonlyArray<UpstreamError.UpstreamError> = [
  new UpstreamError.ServerError({ message: "e", status: 502 }),
  new UpstreamError.RateLimited({ message: "e", scope: "key" }),
  new UpstreamError.Unauthorized({ message: "e" }),
  new UpstreamError.InsufficientCredits({ message: "e" }),
  new UpstreamError.InvalidResponse({ message: "e", status: 200 })
]

describe("Balancer properties", () => {
  it.effect.prop(
    "no key is used twice in one request while another key is untried; dead keys never twice",
    // For each of up to 6 keys: fails with one of the errors above, or answers.
    [
      fc.array(fc.option(fc.integer({ min: 0, max: errors.length - 1 }), { nil: undefined }), {
        minLength: 1,
        maxLength: 6
      })
    ],
    ([behaviour]) =>
      Effect.gen(function* () {
        const ids = behaviour.map((_, i) => `k${i}`)
        const balancer = yield* Balancer.Balancer
        const used: Array<string> = []
        const fiber = yield* balancer
          .run({}, (key) =>
            Effect.suspend(() => {
              used.push(key.id)
              const b = behaviour[Number(key.id.slice(1))]
              return b === undefined ? Effect.succeed(key.id) : Effect.fail(errors[b]!)
            })
          )
          .pipe(Effect.either, Effect.fork)
        yield* TestClock.adjust("10 minutes")
        const result = yield* Fiber.join(fiber)
        const firstRepeat = used.findIndex((id, i) => used.indexOf(id) !== i)
        if (firstRepeat !== -1) {
          // A repeat only once every key was tried.
          expect(new Set(used.slice(0, firstRepeat)).size).toBe(ids.length)
        }
        for (const [i, b] of behaviour.entries()) {
          const dead = b !== undefined && UpstreamError.disposition(errors[b]!) === "eject"
          if (dead) expect(used.filter((id) => id === `k${i}`).length).toBeLessThanOrEqual(1)
        }
        // If any key answers, the caller gets an answer within 6 attempts of 6 keys.
        if (behaviour.some((b) => b === undefined)) expect(Either.isRight(result)).toBe(true)
      }).pipe(Effect.provide(env(keys(behaviour.map((_, i) => `k${i}`)), { maxAttempts: 6, budget: false })))
  )
})
