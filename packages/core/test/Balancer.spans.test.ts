/**
 * The Balancer's spans, through Effect's `Tracer` with an in-memory tracer installed: one
 * `or_balancer.request` per request, one `or_balancer.attempt` per attempt (its child, and the
 * parent of what `use` traces), attributes of ids, tags and numbers only. None with Effect's
 * built-in tracer, with tracing disabled, or with `spans: false`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Balancer, UpstreamError } from "@or-balancer/core"
import { Effect, Exit, Layer, Option, Tracer } from "effect"
import { env, keys, secretOf } from "./fixtures.js"

interface Recorded {
  readonly name: string
  readonly spanId: string
  readonly parent: string | undefined
  readonly attributes: Map<string, unknown>
  exit: Exit.Exit<unknown, unknown> | undefined
}

/** A tracer that keeps every span it makes. */
const inMemory = () => {
  const spans: Array<Recorded> = []
  let next = 0
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      const spanId = `span-${++next}`
      const recorded: Recorded = {
        name,
        spanId,
        parent: Option.getOrUndefined(Option.map(parent, (p) => p.spanId)),
        attributes: new Map(),
        exit: undefined
      }
      spans.push(recorded)
      const span: Tracer.Span = {
        _tag: "Span",
        name,
        spanId,
        traceId: "trace-1",
        parent,
        context,
        status: { _tag: "Started", startTime },
        attributes: recorded.attributes,
        links,
        sampled: true,
        kind,
        end: (endTime, exit) => {
          recorded.exit = exit
          ;(span as { status: Tracer.SpanStatus }).status = { _tag: "Ended", startTime, endTime, exit }
        },
        attribute: (key, value) => {
          recorded.attributes.set(key, value)
        },
        event: () => {},
        addLinks: () => {}
      }
      return span
    },
    context: (f) => f()
  })
  return { spans, layer: Layer.setTracer(tracer) }
}

const serverError = new UpstreamError.ServerError({ message: `boom ${secretOf("a")}`, status: 500 })

const named = (spans: ReadonlyArray<Recorded>, name: string) => spans.filter((s) => s.name === name)

/** The balancer's spans (a caller's own span records what its caller gave it). */
const noSecretIn = (spans: ReadonlyArray<Recorded>) => {
  for (const s of spans.filter((s) => s.name.startsWith("or_balancer."))) {
    for (const v of s.attributes.values()) expect(String(v)).not.toMatch(/sk-or-v1|boom/)
    if (s.exit !== undefined && Exit.isFailure(s.exit))
      expect(JSON.stringify(s.exit.cause)).not.toMatch(/sk-or|boom/)
  }
}

describe("Balancer spans", () => {
  it.effect(
    "run: a request span and one attempt span per try (key, attempt, outcome, error tag, what followed), nested; use's spans under its attempt; no secret",
    () => {
      const { spans, layer } = inMemory()
      return Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        const result = yield* balancer
          .run(
            { model: "m" },
            (key) =>
              Effect.withSpan(
                key.id === "a" ? Effect.fail(serverError) : Effect.succeed(key.id),
                "upstream.call"
              ),
            { costOf: () => 0.25 }
          )
          .pipe(Effect.withSpan("caller"))
        expect(result).toBe("b")
        const caller = named(spans, "caller")[0]!
        const [request] = named(spans, "or_balancer.request")
        expect(request!.parent).toBe(caller.spanId)
        expect(request!.attributes.get("or_balancer.model")).toBe("m")
        expect(request!.attributes.get("or_balancer.attempts")).toBe(2)
        expect(request!.exit && Exit.isSuccess(request!.exit)).toBe(true)
        const attempts = named(spans, "or_balancer.attempt")
        expect(attempts.map((a) => Object.fromEntries(a.attributes))).toEqual([
          {
            "or_balancer.key": "a",
            "or_balancer.attempt": 1,
            "or_balancer.outcome": "failure",
            "or_balancer.error": "ServerError",
            "or_balancer.retry": "retry-other"
          },
          {
            "or_balancer.key": "b",
            "or_balancer.attempt": 2,
            "or_balancer.outcome": "success",
            "or_balancer.cost": 0.25
          }
        ])
        for (const a of attempts) expect(a.parent).toBe(request!.spanId)
        // What `use` traces is a child of its attempt.
        const calls = named(spans, "upstream.call")
        expect(calls.map((c) => c.parent)).toEqual(attempts.map((a) => a.spanId))
        expect(attempts[0]!.exit && Exit.isFailure(attempts[0]!.exit)).toBe(true)
        noSecretIn(spans)
      }).pipe(Effect.provide(env(keys(["a", "b"]))), Effect.provide(layer))
    }
  )

  it.effect(
    "all attempts failed: the request span ends failed with the error's tag and why it gave up, not its message",
    () => {
      const { spans, layer } = inMemory()
      return Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        const error = yield* Effect.flip(balancer.run({}, () => Effect.fail(serverError)))
        expect(error._tag).toBe("AllAttemptsFailed")
        const request = named(spans, "or_balancer.request")[0]!
        expect(request.attributes.get("or_balancer.error")).toBe("AllAttemptsFailed")
        expect(request.attributes.get("or_balancer.gave_up")).toBe("attempts")
        expect(request.attributes.get("or_balancer.attempts")).toBe(2)
        expect(request.exit && Exit.isFailure(request.exit)).toBe(true)
        expect(named(spans, "or_balancer.attempt")).toHaveLength(2)
        noSecretIn(spans)
      }).pipe(Effect.provide(env(keys(["a", "b"]), { maxAttempts: 2 })), Effect.provide(layer))
    }
  )

  it.effect("runScoped: a held attempt's span ends when the answer is settled, with its outcome", () => {
    const { spans, layer } = inMemory()
    return Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      yield* Effect.scoped(
        Effect.gen(function* () {
          const held = yield* balancer.runScoped({}, (key) => Effect.succeed(key.id))
          const attempt = named(spans, "or_balancer.attempt")[0]!
          expect(attempt.exit).toBeUndefined()
          yield* held.succeed(0.5)
          expect(attempt.attributes.get("or_balancer.outcome")).toBe("success")
          expect(attempt.attributes.get("or_balancer.cost")).toBe(0.5)
          expect(attempt.exit).toBeDefined()
        })
      )
      // A held answer abandoned with its scope: cancelled.
      yield* Effect.scoped(balancer.runScoped({}, (key) => Effect.succeed(key.id)))
      expect(named(spans, "or_balancer.attempt")[1]!.attributes.get("or_balancer.outcome")).toBe("cancelled")
    }).pipe(Effect.provide(env(keys(["a"]))), Effect.provide(layer))
  })

  it.effect("no span with Effect's own tracer, with tracing disabled, or with spans: false", () =>
    Effect.gen(function* () {
      // No tracer installed: `use` runs in the caller's span, none of the balancer's.
      const seen = yield* Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        return yield* balancer
          .run({}, () => Effect.map(Effect.currentSpan, (s) => s.name))
          .pipe(Effect.withSpan("caller"))
      }).pipe(Effect.provide(env(keys(["a"]))))
      expect(seen).toBe("caller")

      const disabled = inMemory()
      yield* Effect.flatMap(Balancer.Balancer, (b) => b.run({}, () => Effect.void)).pipe(
        Effect.withTracerEnabled(false),
        Effect.provide(env(keys(["a"]))),
        Effect.provide(disabled.layer)
      )
      expect(disabled.spans).toEqual([])

      const off = inMemory()
      yield* Effect.flatMap(Balancer.Balancer, (b) => b.run({}, () => Effect.void)).pipe(
        Effect.provide(env(keys(["a"]), { spans: false })),
        Effect.provide(off.layer)
      )
      expect(off.spans).toEqual([])
      // With the tracer, the same call makes its two spans.
      const on = inMemory()
      yield* Effect.flatMap(Balancer.Balancer, (b) => b.run({}, () => Effect.void)).pipe(
        Effect.provide(env(keys(["a"]))),
        Effect.provide(on.layer)
      )
      expect(on.spans.map((s) => s.name)).toEqual(["or_balancer.request", "or_balancer.attempt"])
    })
  )
})
