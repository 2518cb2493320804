/**
 * An account taken out on one replica is out on every replica within 100 ms, through the fleet's
 * shared health: a 402 for the account's credits (`openrouter_credits`, CreditLedger's accounts
 * out) and an account-wide 429 (HealthAware). Three replicas in one process, each with its own
 * connection to one real redis-server.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as StateStore from "@or-balancer/core/StateStore"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as CreditAware from "@or-balancer/strategies/CreditAware"
import * as CreditLedger from "@or-balancer/strategies/CreditLedger"
import * as HealthAware from "@or-balancer/strategies/HealthAware"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { Fleet } from "../src/index.js"
import { startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

let n = 0
const keysOf = () => {
  const run = `${++n}-${Math.floor(performance.now())}`
  const k = (id: string, account: string) =>
    Key.make({
      id: `${id}-${run}`,
      secret: Redacted.make(`sk-or-v1-test-${id}-000000000000`),
      account: `${account}-${run}`
    })
  // Enough keys elsewhere that the two taken out do not put HealthAware in panic mode.
  return [k("a1", "one"), k("a2", "one"), k("b1", "two"), k("b2", "two"), k("b3", "two")] as const
}

const replica = (i: number, keys: ReadonlyArray<Key.Key>, stack: "credit" | "health") =>
  Effect.gen(function* () {
    const [a1, a2, b1] = keys
    const memory = yield* CreditLookup.makeMemory({
      [a1!.id]: CreditLookup.keyInfo(9, 10),
      [a2!.id]: CreditLookup.keyInfo(8, 10),
      [b1!.id]: CreditLookup.keyInfo(1, 10),
      [keys[3]!.id]: CreditLookup.keyInfo(1, 10),
      [keys[4]!.id]: CreditLookup.keyInfo(1, 10)
    })
    const base = Layer.mergeAll(KeyPool.layer(keys).pipe(Layer.orDie), StateStore.layerMemory)
    const fleet = Fleet.layer({ url: server.url, replicaId: `r${i}`, replicas: 3, pollEveryMs: 20 }).pipe(
      Layer.orDie
    )
    const selector =
      stack === "credit"
        ? CreditAware.layer({ estimate: 0.1 }).pipe(
            Layer.provideMerge(CreditLedger.layer({ accountRecheck: "30 seconds" })),
            Layer.provideMerge(Layer.succeed(CreditLookup.CreditLookup, memory.service))
          )
        : HealthAware.layer({ baseCooldown: Duration.seconds(30) }).pipe(
            Layer.provide(RoundRobin.layer({ name: `r${i}` }))
          )
    const ctx = yield* Layer.build(selector.pipe(Layer.provideMerge(Layer.merge(base, fleet))))
    return Context.get(ctx, KeySelector.KeySelector)
  })

const request = (): KeySelector.SelectRequest => ({
  attempt: 1,
  tried: new Set(),
  deadline: Date.now() + 2_000
})

/** Selects on `selector` and reports `error` when it lands on a key of `account`, else a success; the key's id. */
const attempt = (selector: KeySelector.Service, error?: UpstreamError.UpstreamError, account?: string) =>
  KeySelector.use(
    selector,
    request(),
    (l) => Effect.succeed(l.key),
    (exit) =>
      exit._tag === "Success" && error !== undefined && exit.value.account === account
        ? KeySelector.failure(1, error)
        : KeySelector.success(1, 0)
  ).pipe(Effect.map((k) => k.id))

const cases = [
  [
    "credit",
    "a 402 for the account's credits (openrouter_credits)",
    new UpstreamError.InsufficientCredits({ message: "402", scope: "account" })
  ],
  [
    "health",
    "an account-wide 429",
    new UpstreamError.RateLimited({ message: "429", scope: "account", retryAfter: Duration.seconds(30) })
  ]
] as const

describe("accounts out over the fleet", () => {
  for (const [stack, what, error] of cases) {
    it.scopedLive(`${what} on one replica: no replica uses the account's keys within 100 ms`, () =>
      Effect.gen(function* () {
        const keys = keysOf()
        const account = keys[0].account!
        const replicas = yield* Effect.forEach([0, 1, 2], (i) => replica(i, keys, stack))
        // Every replica has used the account's keys before.
        for (const r of replicas) for (let i = 0; i < 3; i++) yield* attempt(r)
        let hit = yield* attempt(replicas[0]!, error, account)
        while (!hit.startsWith("a")) hit = yield* attempt(replicas[0]!, error, account)
        const at = performance.now()
        yield* Effect.sleep(100)
        const used: Array<string> = []
        for (const r of replicas.slice(1)) for (let i = 0; i < 6; i++) used.push(yield* attempt(r))
        console.log(
          `${stack}: after ${Math.round(performance.now() - at)} ms the others chose ${used.join(", ")}`
        )
        assert.deepStrictEqual(
          used.filter((id) => id.startsWith("a")),
          []
        )
      })
    )
  }
})
