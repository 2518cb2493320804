import { afterAll, assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
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
        // The test's own reads, retried: a 100 ms command timeout on a loaded machine is not what
        // is under test.
        const read = <A, E>(e: Effect.Effect<A, E, RedisStore.RedisStore>) =>
          Effect.retry(e, { times: 10, schedule: Schedule.spaced(20) })
        assert.strictEqual((yield* read(acquire)).granted, 0)

        const killedAt = performance.now()
        process.kill(child.pid!, "SIGKILL")
        // When the killed replica's slice expires by Redis's clock, read after the kill (so no
        // renewal of its follows): it must be within one TTL, since it renewed before it died.
        const doomed = (yield* read(CapacityLeases.inspectPermits(keyId))).slices.find(
          (s) => s.replicaId === "doomed"
        )
        const expiresBy = performance.now() + (doomed?.ttlMs ?? 0)
        assert.isAtMost(doomed?.ttlMs ?? 0, ttlMs)
        // Then every call sent after that expiry gets the whole cap: measured from the expiry, so a
        // loaded machine that delays the polls cannot fail it, while a slice that outlived its TTL
        // (or capacity not returned) still does.
        let granted = 0
        let shortAfterExpiry = 0
        while (granted < 6 && performance.now() - killedAt < ttlMs + 5_000) {
          yield* Effect.sleep(50)
          const sentAt = performance.now()
          granted = (yield* read(acquire)).granted
          if (granted < 6 && sentAt > expiresBy) shortAfterExpiry++
        }
        const seconds = (performance.now() - killedAt) / 1_000
        console.log(
          `capacity back ${seconds.toFixed(2)} s after SIGKILL (TTL ${ttlMs / 1_000} s; the slice had ` +
            `${((doomed?.ttlMs ?? 0) / 1_000).toFixed(2)} s left at the kill)`
        )
        assert.strictEqual(granted, 6)
        assert.strictEqual(shortAfterExpiry, 0)
      }).pipe(Effect.provide(RedisStore.layer({ url: server.url }))),
    30_000
  )
})
