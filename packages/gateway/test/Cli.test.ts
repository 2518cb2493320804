import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Cli from "../src/Cli.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { envOf, fileFor, simKeys } from "./GatewaySupport.js"

const capture = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const lines: Array<string> = []
    const current = yield* Console.consoleWith(Effect.succeed)
    const recording: Console.Console = {
      ...current,
      log: (...args: ReadonlyArray<unknown>) => Effect.sync(() => void lines.push(args.map(String).join(" ")))
    }
    const exit = yield* Effect.exit(Effect.withConsole(effect, recording))
    return { exit, output: lines.join("\n") }
  })

const writeConfig = (content: unknown) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "or-balancer-cli-"))
      const file = path.join(dir, "gateway.json")
      fs.writeFileSync(file, JSON.stringify(content))
      return file
    }),
    (file) => Effect.sync(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }))
  )

describe("or-balancer check", () => {
  it.scopedLive("prints a table of every key and fails when one is bad, without printing a secret", () =>
    Effect.gen(function* () {
      const keys = simKeys(["capped", "open", "dead"]).map((k) =>
        k.label === "capped"
          ? { ...k, limit: 10, limitReset: "monthly" as const }
          : k.label === "dead"
            ? { ...k, revoked: true }
            : k
      )
      const sim = yield* Simulator.make({ seed: 7, keys })
      const file = yield* writeConfig(fileFor(sim))
      const run = Cli.run(["node", "or-balancer", "check", "--config", file]).pipe(
        Effect.provide(NodeContext.layer),
        Effect.withConfigProvider(ConfigProvider.fromMap(envOf(sim)))
      )
      const { exit, output } = yield* capture(run)
      assert.isTrue(Exit.isFailure(exit))
      // What is checked is said first; a failure's reason has its own column, not "reset"'s.
      assert.match(
        output,
        /^checking 3 keys with GET http:\/\/127\.0\.0\.1:\d+\/api\/v1\/key: is the key accepted/m
      )
      assert.match(output, /^id\s+account\s+valid\s+limit\s+remaining\s+reset\s+problem$/m)
      assert.match(output, /^capped\s+acme\s+yes\s+\$10\.0000\s+\$10\.0000\s+monthly\s+-$/m)
      assert.match(output, /^open\s+acme\s+yes\s+unlimited\s+unlimited\s+never\s+-$/m)
      assert.match(output, /^dead\s+acme\s+NO\s+-\s+-\s+-\s+unauthorized \(401\): revoked or not a key$/m)
      for (const k of sim.keys) assert.notInclude(output, Redacted.value(k.secret))

      // All good: success.
      yield* sim.updateKey("dead", { revoked: false })
      const again = yield* capture(run)
      assert.isTrue(Exit.isSuccess(again.exit))
    })
  )

  it.scopedLive("a bad config file fails with the field's path", () =>
    Effect.gen(function* () {
      const sim = yield* Simulator.make({ seed: 7, keys: simKeys(["a"]) })
      const file = yield* writeConfig({ ...fileFor(sim), retry: { maxAttempts: -1 } })
      const { exit } = yield* capture(
        Cli.run(["node", "or-balancer", "check", "--config", file]).pipe(
          Effect.provide(NodeContext.layer),
          Effect.withConfigProvider(ConfigProvider.fromMap(envOf(sim)))
        )
      )
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.include(String(exit.cause), "retry.maxAttempts")
    })
  )
})

describe("or-balancer simulate", () => {
  it.scopedLive("runs the simulator standalone: it prints its URL and keys, and answers a chat", () =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const current = yield* Console.consoleWith(Effect.succeed)
      const recording: Console.Console = {
        ...current,
        log: (...args: ReadonlyArray<unknown>) =>
          Effect.sync(() => void lines.push(args.map(String).join(" ")))
      }
      const fiber = yield* Cli.run(["node", "or-balancer", "simulate", "--port", "0", "--seed", "5"]).pipe(
        Effect.provide(NodeContext.layer),
        Effect.withConsole(recording),
        Effect.forkScoped
      )
      let url: string | undefined
      for (let i = 0; i < 200 && url === undefined; i++) {
        url = /simulator listening: (http:\/\/127\.0\.0\.1:\d+\/api\/v1)/.exec(lines.join("\n"))?.[1]
        if (url === undefined) yield* Effect.sleep("10 millis")
      }
      assert.isDefined(url, lines.join("\n"))
      // The demo pool by default; its fake keys are printed so a client can use them.
      const primary = /^ {2}primary +account=acme +(sk-or-v1-\S+)$/m.exec(lines.join("\n"))?.[1]
      assert.isDefined(primary)
      assert.strictEqual(primary, Simulator.simulatedSecret(5, 0))
      const answer = yield* Effect.promise(() =>
        fetch(`${url}/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${primary}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "openai/gpt-4o-mini", messages: [{ role: "user", content: "hi" }] })
        }).then(async (r) => ({ status: r.status, json: (await r.json()) as { choices: Array<unknown> } }))
      )
      assert.strictEqual(answer.status, 200)
      assert.lengthOf(answer.json.choices, 1)
      yield* Fiber.interrupt(fiber)
    })
  )
})
