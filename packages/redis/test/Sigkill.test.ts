import { afterAll, assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import { CapacityLeases, RedisStore } from "../src/index.js"
import { startRedis } from "./support.js"

const server = startRedis()
afterAll(() => server.close())

const fixture = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "fixtures/replica.ts")

describe("a replica killed with SIGKILL", () => {
  it.scopedLive(
    "its slice returns to the others within the lease TTL",
    () =>
      Effect.gen(function* () {
        const keyId = "sigkill"
        const ttlMs = 1_500
        const child = spawn(
          process.execPath,
          ["--import", "tsx", fixture, server.url, keyId, "doomed", "6", `${ttlMs}`],
          {
            stdio: ["ignore", "pipe", "inherit"]
          }
        )
        yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
        // Wait for its first grant: it holds the whole cap.
        const first = yield* Effect.async<string>((resume) => {
          child.stdout!.once("data", (chunk: Buffer) => resume(Effect.succeed(chunk.toString())))
        })
        assert.strictEqual(first.trim().split("\n")[0], "granted 6")
        const acquire = CapacityLeases.acquirePermits({
          keyId,
          replicaId: "survivor",
          want: 6,
          cap: 6,
          ttlMs
        })
        assert.strictEqual((yield* acquire).granted, 0)

        const killedAt = performance.now()
        process.kill(child.pid!, "SIGKILL")
        let granted = 0
        while (granted < 6 && performance.now() - killedAt < ttlMs + 1_000) {
          yield* Effect.sleep(50)
          granted = (yield* acquire).granted
        }
        const seconds = (performance.now() - killedAt) / 1_000
        console.log(`capacity back ${seconds.toFixed(2)} s after SIGKILL (TTL ${ttlMs / 1_000} s)`)
        assert.strictEqual(granted, 6)
        // Within one TTL of its last renewal (which was at most TTL/3 before the kill).
        assert.isAtMost(seconds, ttlMs / 1_000 + 0.5) // + polling, on a loaded machine
      }).pipe(Effect.provide(RedisStore.layer({ url: server.url }))),
    30_000
  )
})
