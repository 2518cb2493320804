import { describe, expect, it } from "@effect/vitest"
import { Balancer, KeySelector, UpstreamError } from "@or-balancer/core"
import { Deferred, Effect, Exit, Fiber, Ref, Scope } from "effect"
import { env, keys, Probe } from "./fixtures.js"

const request: KeySelector.SelectRequest = { attempt: 1, tried: new Set() }
const tags = (probe: Probe) => Effect.map(Ref.get(probe.reports), (r) => r.map((x) => x.outcome._tag))

describe("KeySelector leases", () => {
  it.effect("use reports once on every exit: success, failure, interruption", () =>
    Effect.gen(function* () {
      const selector = yield* KeySelector.KeySelector
      const probe = yield* Probe
      expect(yield* KeySelector.use(selector, request, (lease) => Effect.succeed(lease.key.id))).toBe("a")
      const failed = yield* KeySelector.use(selector, request, () => Effect.fail("nope" as const)).pipe(
        Effect.flip
      )
      expect(failed).toBe("nope")
      const started = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(
        KeySelector.use(selector, request, () =>
          Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)
        )
      )
      yield* Deferred.await(started)
      expect(yield* Ref.get(probe.open)).toBe(1)
      yield* Fiber.interrupt(fiber)
      expect(yield* Ref.get(probe.open)).toBe(0)
      expect(yield* tags(probe)).toEqual(["Success", "Cancelled", "Cancelled"])
      // The caller may map the exit to its own outcome.
      yield* KeySelector.use(
        selector,
        request,
        () => Effect.void,
        () => KeySelector.success("2 millis", 0.5)
      )
      const last = (yield* Ref.get(probe.reports)).at(-1)!.outcome
      expect(last._tag === "Success" && last.cost).toBe(0.5)
    }).pipe(Effect.provide(env(keys(["a"]))))
  )

  it.effect("scoped: released as Cancelled when the scope closes, unless reported first; once only", () =>
    Effect.gen(function* () {
      const selector = yield* KeySelector.KeySelector
      const probe = yield* Probe
      const scope = yield* Scope.make()
      const kept = yield* Scope.extend(KeySelector.scoped(selector, request), scope)
      expect(kept.key.id).toBe("a")
      expect(yield* Ref.get(probe.open)).toBe(1)
      yield* Scope.close(scope, Exit.void)
      expect(yield* Ref.get(probe.open)).toBe(0)
      yield* Effect.scoped(
        Effect.flatMap(KeySelector.scoped(selector, request), (lease) =>
          Effect.zipRight(lease.report(KeySelector.success(1)), lease.report(KeySelector.success(1)))
        )
      )
      expect(yield* Ref.get(probe.open)).toBe(0)
      expect(yield* tags(probe)).toEqual(["Cancelled", "Success"])
    }).pipe(Effect.provide(env(keys(["a"]))))
  )

  it.effect("Balancer.runScoped: a stream never settled is released as Cancelled when its scope closes", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const probe = yield* Probe
      yield* Effect.scoped(balancer.runScoped({}, () => Effect.succeed("stream")))
      expect(yield* Ref.get(probe.open)).toBe(0)
      expect(yield* tags(probe)).toEqual(["Cancelled"])
      // The same with a scope of its own; a settled lease is not reported again.
      const scope = yield* Scope.make()
      const held = yield* Scope.extend(
        balancer.runScoped({}, () => Effect.succeed("stream")),
        scope
      )
      expect(yield* Ref.get(probe.open)).toBe(1)
      yield* held.succeed(0.1)
      yield* Scope.close(scope, Exit.void)
      const second = yield* Scope.make()
      yield* Scope.extend(
        balancer.runScoped({}, () => Effect.succeed("stream")),
        second
      )
      yield* Scope.close(second, Exit.void)
      expect(yield* Ref.get(probe.open)).toBe(0)
      expect(yield* tags(probe)).toEqual(["Cancelled", "Success", "Cancelled"])
    }).pipe(Effect.provide(env(keys(["a"]))))
  )

  it.effect("Balancer.runHeld: the holder settles once; cancel after interruption releases the key", () =>
    Effect.gen(function* () {
      const balancer = yield* Balancer.Balancer
      const probe = yield* Probe
      const handed: Array<Balancer.Scoped<string>> = []
      const held = yield* balancer.runHeld(
        {},
        () => Effect.succeed("stream"),
        (h) => handed.push(h)
      )
      // Handed over synchronously, before the effect returned: the same held attempt.
      expect(handed).toEqual([held])
      expect(yield* Ref.get(probe.open)).toBe(1)
      yield* held.succeed(0.2)
      yield* held.cancel
      expect(yield* Ref.get(probe.open)).toBe(0)
      // Interrupted right after the hand-over: the holder still has it and cancels it.
      const gate = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(
        Effect.zipRight(
          balancer.runHeld(
            {},
            () => Effect.succeed("stream"),
            (h) => handed.push(h)
          ),
          Deferred.await(gate)
        )
      )
      yield* Effect.yieldNow()
      expect(handed).toHaveLength(2)
      expect(yield* Ref.get(probe.open)).toBe(1)
      yield* Fiber.interrupt(fiber)
      expect(yield* Ref.get(probe.open)).toBe(1)
      yield* handed[1]!.cancel
      expect(yield* Ref.get(probe.open)).toBe(0)
      // The caller's own error: no verdict, and nothing handed over.
      const failing = yield* balancer
        .runHeld(
          {},
          () => Effect.fail("own error" as const),
          (h) => handed.push(h)
        )
        .pipe(Effect.flip)
      expect(failing).toBe("own error")
      expect(handed).toHaveLength(2)
      expect(yield* Ref.get(probe.open)).toBe(0)
      expect(yield* tags(probe)).toEqual(["Success", "Cancelled", "Cancelled"])
    }).pipe(Effect.provide(env(keys(["a"]))))
  )

  it.effect(
    "Balancer.runHeld: only the attempt that succeeded is handed over; its settlers work detached",
    () =>
      Effect.gen(function* () {
        const balancer = yield* Balancer.Balancer
        const probe = yield* Probe
        const handed: Array<Balancer.Scoped<string>> = []
        const held = yield* balancer.runHeld(
          {},
          (key) =>
            key.id === "a"
              ? Effect.fail(new UpstreamError.ServerError({ message: "boom", status: 500 }))
              : Effect.succeed(key.id),
          (h) => handed.push(h)
        )
        expect(handed.map((h) => h.key.id)).toEqual(["b"])
        expect(held.value).toBe("b")
        expect(held.attempt).toBe(2)
        // Point-free use, as in `Stream.tapError(held.fail)`: the settlers need no `this`.
        const { fail, succeed } = held
        yield* fail(new UpstreamError.ServerError({ message: "broke mid-stream", status: 502 }))
        yield* succeed(1)
        expect(yield* Ref.get(probe.open)).toBe(0)
        expect(yield* tags(probe)).toEqual(["Failure", "Failure"])
      }).pipe(Effect.provide(env(keys(["a", "b"]))))
  )
})

describe("KeySelector.withOnly", () => {
  const ks = keys(["a", "b", "c", "d"])
  const gate: KeySelector.Gate = (k) =>
    k.id === "b" ? { reason: "cooldown", until: 2_000 } : k.id === "c" ? { reason: "unhealthy" } : undefined
  const onlyGate =
    (id: string): KeySelector.Gate =>
    (k) =>
      k.id === id ? undefined : { reason: "ineligible" }

  it("is a gate narrowed to the key: the same candidates and the same refusal", () => {
    for (const target of ks) {
      for (const tried of [new Set<string>(), new Set(["a"]), new Set(["a", "b", "c", "d"])]) {
        const base: KeySelector.SelectRequest = { attempt: 1, tried, gate }
        const viaOnly = KeySelector.withOnly(base, target)
        const viaGate = KeySelector.withGate(base, onlyGate(target.id))
        expect(KeySelector.candidates(viaOnly, ks)).toEqual(KeySelector.candidates(viaGate, ks))
        expect(KeySelector.explain(viaOnly, ks, 1_000)).toEqual(KeySelector.explain(viaGate, ks, 1_000))
      }
    }
  })

  it("is kept by a decorator's withGate", () => {
    const kept = KeySelector.withGate(KeySelector.withOnly(request, ks[0]!), gate)
    expect(kept.only?.id).toBe("a")
    expect(KeySelector.isCandidate(kept, ks[0]!)).toBe(true)
    expect(KeySelector.isCandidate(kept, ks[3]!)).toBe(false)
  })
})
