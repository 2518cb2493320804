import { describe, expect, it } from "@effect/vitest"
import { StateStore } from "@or-balancer/core"
import { Effect } from "effect"

describe("StateStore memory entries", () => {
  it.effect("the cached array is replaced on every change, and kept while nothing changes", () =>
    Effect.gen(function* () {
      const s = yield* StateStore.makeMemory
      const ids = Effect.map(s.entries<number>("n"), (es) => es.map(([id, v]) => `${id}=${v}`))
      expect(yield* ids).toEqual([])
      yield* s.add("n", "a", 1)
      expect(yield* ids).toEqual(["a=1"])
      const before = yield* s.entries<number>("n")
      expect(yield* s.entries<number>("n")).toBe(before)
      yield* s.set("n", "gone", undefined) // deleting a missing id changes nothing
      expect(yield* s.entries<number>("n")).toBe(before)
      yield* s.set("n", "b", 2)
      expect(yield* ids).toEqual(["a=1", "b=2"])
      yield* s.modify<number, void>("n", "a", (v) => [undefined, (v ?? 0) + 10])
      expect(yield* ids).toEqual(["a=11", "b=2"])
      yield* s.add("n", "b", -2)
      expect(yield* ids).toEqual(["a=11", "b=0"])
      yield* s.modify<number, void>("n", "a", () => [undefined, undefined])
      expect(yield* ids).toEqual(["b=0"])
      yield* s.set("other", "x", 1) // another namespace leaves this one's array alone
      expect(yield* ids).toEqual(["b=0"])
      expect(before.map(([id]) => id)).toEqual(["a"]) // an array handed out is a snapshot
    })
  )

  it.effect(
    "a value changed in place and handed back is kept without a write; the array still shows it",
    () =>
      Effect.gen(function* () {
        const s = yield* StateStore.makeMemory
        yield* s.set("n", "a", { hits: 0 })
        const before = yield* s.entries<{ hits: number }>("n")
        const seen = yield* s.modify<{ hits: number }, number>("n", "a", (v) => {
          v!.hits++
          return [v!.hits, v]
        })
        expect(seen).toBe(1)
        expect(yield* s.entries<{ hits: number }>("n")).toBe(before)
        expect(before[0]![1].hits).toBe(1)
        expect(yield* s.get<{ hits: number }>("n", "a")).toEqual({ hits: 1 })
      })
  )

  it.effect("many namespaces (past the ones found by a scan) are kept apart", () =>
    Effect.gen(function* () {
      const s = yield* StateStore.makeMemory
      const names = Array.from({ length: 40 }, (_, i) => `ns-${i}`)
      for (const [i, n] of names.entries()) yield* s.set(n, "id", i)
      for (const [i, n] of names.entries()) {
        expect(yield* s.get<number>(n, "id")).toBe(i)
        expect(yield* s.entries<number>(n)).toEqual([["id", i]])
      }
      // Names built at run time find the same namespace as their constants.
      expect(yield* s.get<number>(["ns", "3"].join("-"), "id")).toBe(3)
      expect(yield* s.get<number>(["ns", "33"].join("-"), "id")).toBe(33)
    })
  )
})
