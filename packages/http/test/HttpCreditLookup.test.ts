import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { CreditLookup, Key } from "@or-balancer/core"
import { Effect, Layer } from "effect"
import { HttpCreditLookup, OpenRouterClient } from "../src/index.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { errorBody, json, makeKeys, serve } from "./support.js"

const lookupLayer = (baseUrl: string) =>
  HttpCreditLookup.layer.pipe(
    Layer.provide(NodeHttpClient.layerUndici),
    Layer.provide(OpenRouterClient.layerClientConfig({ baseUrl }))
  )

describe("HttpCreditLookup", () => {
  it.live("with a management key, accountBalance reads GET /credits; an account without one has none", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 3,
        keys: [
          { label: "k", account: "one", secret: Simulator.simulatedSecret(3, 0), usage: 0.25 },
          { label: "admin", account: "one", secret: Simulator.simulatedSecret(3, 1), management: true }
        ],
        accounts: { one: { totalCredits: 2 } }
      })
      const admin = Key.make({ id: "one:management", secret: sim.keys[1]!.secret })
      yield* Effect.gen(function* () {
        const lookup = yield* CreditLookup.CreditLookup
        expect(yield* lookup.accountBalance!("one")).toBe(1.75)
        expect(yield* lookup.accountBalance!("two")).toBeUndefined()
      }).pipe(
        Effect.provide(
          HttpCreditLookup.layerWithManagement(new Map([["one", admin]])).pipe(
            Layer.provide(NodeHttpClient.layerUndici),
            Layer.provide(OpenRouterClient.layerClientConfig({ baseUrl: sim.baseUrl }))
          )
        )
      )
    }).pipe(Effect.scoped)
  )

  it.live("reads GET /key of the simulator into KeyInfo; a revoked key is Unauthorized", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({
        seed: 3,
        keys: [
          {
            label: "capped",
            secret: Simulator.simulatedSecret(3, 0),
            limit: 10,
            usage: 2.5,
            limitReset: "monthly"
          },
          { label: "unlimited", secret: Simulator.simulatedSecret(3, 1), limit: null },
          { label: "dead", secret: Simulator.simulatedSecret(3, 2), limit: 5, revoked: true }
        ]
      })
      const [capped, unlimited, dead] = sim.keys.map((k) => Key.make({ id: k.label, secret: k.secret }))
      yield* Effect.gen(function* () {
        const lookup = yield* CreditLookup.CreditLookup
        const a = yield* lookup.lookup(capped!)
        expect(a).toEqual({
          label: expect.any(String),
          limit: 10,
          limitRemaining: 7.5,
          limitReset: "monthly",
          usage: 2.5,
          isFreeTier: false
        })
        const b = yield* lookup.lookup(unlimited!)
        expect([b.limit, b.limitRemaining]).toEqual([null, null])
        const error = yield* Effect.flip(lookup.lookup(dead!))
        expect(error._tag).toBe("Unauthorized")
        expect((yield* sim.stats).keys.capped?.keyLookups).toBe(1)
      }).pipe(Effect.provide(lookupLayer(sim.baseUrl)))
    }).pipe(Effect.scoped)
  )

  it.live("falls back to the legacy /auth/key when /key answers 404", () =>
    Effect.gen(function* () {
      const server = yield* serve((req, res) =>
        req.path === "/key"
          ? json(res, 404, errorBody(404, "Not Found"))
          : json(res, 200, {
              data: {
                label: "old",
                limit: 1,
                limit_remaining: 0.25,
                usage: 0.75,
                is_free_tier: true,
                rate_limit: {}
              }
            })
      )
      const info = yield* Effect.flatMap(CreditLookup.CreditLookup, (l) =>
        l.lookup(makeKeys(["k1"])[0]!)
      ).pipe(Effect.provide(lookupLayer(server.url)))
      expect(info).toEqual({
        label: "old",
        limit: 1,
        limitRemaining: 0.25,
        limitReset: null,
        usage: 0.75,
        isFreeTier: true
      })
      expect(server.seen.map((s) => [s.method, s.path, s.key])).toEqual([
        ["GET", "/key", "k1"],
        ["GET", "/auth/key", "k1"]
      ])
    }).pipe(Effect.scoped)
  )

  it.live("a body without data is InvalidResponse", () =>
    Effect.gen(function* () {
      const server = yield* serve((_req, res) => json(res, 200, { label: "x" }))
      const error = yield* Effect.flatMap(CreditLookup.CreditLookup, (l) =>
        Effect.flip(l.lookup(makeKeys(["k1"])[0]!))
      ).pipe(Effect.provide(lookupLayer(server.url)))
      expect(error._tag).toBe("InvalidResponse")
      expect(error.message).toContain("data")
    }).pipe(Effect.scoped)
  )
})
