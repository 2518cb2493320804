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
})
