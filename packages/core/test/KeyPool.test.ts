import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Key, KeyPool } from "@or-balancer/core"
import { Cause, ConfigProvider, Effect, Exit, Layer, Redacted } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { secretOf } from "./fixtures.js"

const A = secretOf("alpha")
const B = secretOf("bravo")

const failureText = (exit: Exit.Exit<unknown, unknown>) => {
  expect(Exit.isFailure(exit)).toBe(true)
  return Exit.isFailure(exit) ? Cause.pretty(exit.cause) : ""
}

const fromEnv = (vars: Record<string, string>) =>
  Effect.gen(function* () {
    const pool = yield* KeyPool.KeyPool
    return yield* pool.get
  }).pipe(
    Effect.provide(KeyPool.layerConfig()),
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(vars))))
  )

describe("Key", () => {
  it.effect("ids default to a log-safe fingerprint; weight defaults to 1", () =>
    Effect.gen(function* () {
      const key = yield* Key.decode({ secret: A }, "keys[0]")
      expect(key.id).toBe(`sk-or-…${A.slice(-4)}`)
      expect(key.weight).toBe(1)
      expect(Redacted.value(key.secret)).toBe(A)
      expect(String(key.secret)).not.toContain(A)
      expect(JSON.stringify(key)).not.toContain(A)
    })
  )

  it.effect("a bad secret names the entry and the field, never the value", () =>
    Effect.gen(function* () {
      const bad = "sk-live-not-an-openrouter-key-123456"
      const exit = yield* Effect.exit(Key.decode({ id: "main", secret: bad }, "keys[2]"))
      const text = failureText(exit)
      expect(text).toContain("keys[2].secret")
      expect(text).not.toContain(bad)
      expect(text).not.toContain("not-an-openrouter")
    })
  )

  it.effect("bad weight and unknown fields name their paths", () =>
    Effect.gen(function* () {
      const weight = failureText(yield* Effect.exit(Key.decode({ secret: A, weight: 0 }, "keys[0]")))
      expect(weight).toContain("keys[0].weight")
      expect(weight).toContain("positive integer")
      const extra = failureText(yield* Effect.exit(Key.decode({ secret: A, wieght: 2 }, "keys[1]")))
      expect(extra).toContain("keys[1].wieght")
      expect(weight + extra).not.toContain(A)
    })
  )
})

describe("KeyPool", () => {
  it.effect("reads OPENROUTER_API_KEYS with optional labels", () =>
    Effect.gen(function* () {
      const keys = yield* fromEnv({ OPENROUTER_API_KEYS: `primary=${A}, ${B}` })
      expect(keys.map((k) => k.id)).toEqual(["primary", `sk-or-…${B.slice(-4)}`])
    })
  )

  it.effect("a bad entry in the env fails at start-up naming its position, not its content", () =>
    Effect.gen(function* () {
      const text = failureText(yield* Effect.exit(fromEnv({ OPENROUTER_API_KEYS: `${A},oops-${B}` })))
      expect(text).toContain("OPENROUTER_API_KEYS[1].secret")
      expect(text).not.toContain(B)
      expect(text).not.toContain(A)
    })
  )

  it.effect("empty pool, duplicate ids and duplicate secrets are clear errors", () =>
    Effect.gen(function* () {
      expect(failureText(yield* Effect.exit(fromEnv({ OPENROUTER_API_KEYS: " , " })))).toContain("no keys")
      const dupId = failureText(yield* Effect.exit(fromEnv({ OPENROUTER_API_KEYS: `x=${A},x=${B}` })))
      expect(dupId).toContain('duplicate id "x"')
      const dupSecret = failureText(yield* Effect.exit(fromEnv({ OPENROUTER_API_KEYS: `x=${A},y=${A}` })))
      expect(dupSecret).toContain("keys[1].secret")
      expect(dupSecret).not.toContain(A)
    })
  )

  it.effect("reads a JSON file; errors name the field path", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "orb-"))
      const good = path.join(dir, "good.json")
      fs.writeFileSync(
        good,
        JSON.stringify({
          keys: [{ id: "a", secret: A, account: "acme", weight: 3, models: ["anthropic/*"] }]
        })
      )
      const keys = yield* Effect.flatMap(KeyPool.KeyPool, (p) => p.get).pipe(
        Effect.provide(KeyPool.layerFile(good).pipe(Layer.provide(NodeFileSystem.layer)))
      )
      expect(keys[0]).toMatchObject({ id: "a", account: "acme", weight: 3, models: ["anthropic/*"] })

      const bad = path.join(dir, "bad.json")
      fs.writeFileSync(
        bad,
        JSON.stringify({
          keys: [
            { id: "a", secret: A },
            { id: "b", secret: B, maxConcurrency: -1 }
          ]
        })
      )
      const text = failureText(
        yield* Effect.exit(
          Effect.flatMap(KeyPool.KeyPool, (p) => p.get).pipe(
            Effect.provide(KeyPool.layerFile(bad).pipe(Layer.provide(NodeFileSystem.layer)))
          )
        )
      )
      expect(text).toContain("keys[1].maxConcurrency")

      const broken = path.join(dir, "broken.json")
      fs.writeFileSync(broken, `{"keys": [{"secret": "${A}"`)
      const brokenText = failureText(
        yield* Effect.exit(
          Effect.flatMap(KeyPool.KeyPool, (p) => p.get).pipe(
            Effect.provide(KeyPool.layerFile(broken).pipe(Layer.provide(NodeFileSystem.layer)))
          )
        )
      )
      expect(brokenText).toContain("not valid JSON")
      expect(brokenText).not.toContain(A)
    })
  )

  it.effect("keys can be added and removed at run time; changes are observable", () =>
    Effect.gen(function* () {
      const pool = yield* KeyPool.make([Key.make({ id: "a", secret: Redacted.make(A) })])
      yield* pool.add(Key.make({ id: "b", secret: Redacted.make(B) }))
      expect((yield* pool.get).map((k) => k.id)).toEqual(["a", "b"])
      const dup = yield* Effect.exit(pool.add(Key.make({ id: "b", secret: Redacted.make(secretOf("c")) })))
      expect(Exit.isFailure(dup)).toBe(true)
      expect(yield* pool.remove("a")).toBe(true)
      expect(yield* pool.remove("a")).toBe(false)
      expect((yield* pool.get).map((k) => k.id)).toEqual(["b"])
    })
  )

  it.effect("concurrent adds keep every key", () =>
    Effect.gen(function* () {
      const pool = yield* KeyPool.make([Key.make({ id: "a", secret: Redacted.make(A) })])
      const ids = Array.from({ length: 12 }, (_, i) => `k${String(i).padStart(2, "x")}`)
      yield* Effect.forEach(
        ids,
        (id) =>
          Effect.zipRight(Effect.yieldNow(), pool.add(Key.make({ id, secret: Redacted.make(secretOf(id)) }))),
        { concurrency: "unbounded", discard: true }
      ).pipe(
        // A yield after every few steps: the adds interleave between reading the pool and writing it.
        Effect.withMaxOpsBeforeYield(16)
      )
      expect((yield* pool.get).map((k) => k.id).sort()).toEqual(["a", ...ids].sort())
      expect(pool.unsafeGet!().length).toBe(13)
    })
  )
})
