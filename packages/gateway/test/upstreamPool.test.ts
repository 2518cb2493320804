/**
 * The upstream pool's guards (upstreamPool.ts) on undici's pool: out of fds, the pool is capped at
 * the connections it has open (calls queue for them rather than open more), and the cap lifts a
 * second later; a key's 401 fails the calls still queued on it, each once.
 */
import { assert, describe, it } from "@effect/vitest"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as Effect from "effect/Effect"
import * as http from "node:http"
import type * as net from "node:net"
import * as Undici from "undici"
import * as Pool from "../src/internal/upstreamPool.js"

/** A server that answers after `ms`, counting the connections opened to it. */
const slowServer = (ms: number) =>
  Effect.acquireRelease(
    Effect.async<{ url: string; connections: () => number; server: http.Server }>((resume) => {
      let connections = 0
      const server = http.createServer((req, res) => {
        req.resume()
        setTimeout(() => res.end("{}"), ms)
      })
      server.on("connection", () => connections++)
      server.listen(0, "127.0.0.1", () =>
        resume(
          Effect.succeed({
            url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
            connections: () => connections,
            server
          })
        )
      )
    }),
    ({ server }) => Effect.sync(() => server.closeAllConnections())
  )

/** `n` calls at once; one failed for want of fds is sent again 50 ms later, as the gateway does. */
const calls = (pool: Undici.Pool, n: number) =>
  Effect.promise(() =>
    Promise.all(
      Array.from({ length: n }, async () => {
        for (;;) {
          try {
            const r = await pool.request({ method: "GET", path: "/" })
            return await r.body.text()
          } catch (e) {
            if (!Pool.outOfFds(e)) throw e
            await new Promise((r) => setTimeout(r, Pool.FD_RETRY_MS))
          }
        }
      })
    )
  )

describe("upstream pool guards", () => {
  it.scopedLive("out of fds: capped at the open connections for a second, then as wide as before", () =>
    Effect.gen(function* () {
      const server = yield* slowServer(30)
      // A connector that fails new connections with EMFILE while `outOfFds` is set.
      let outOfFds = false
      let refused = 0
      const connector = Undici.buildConnector({})
      const pool = new Undici.Pool(server.url, {
        connections: 16,
        connect: (options, callback) => {
          if (!outOfFds) return connector(options, callback)
          refused++
          callback(Object.assign(new Error("connect EMFILE"), { code: "EMFILE" }), null)
        }
      })
      yield* Effect.addFinalizer(() => Effect.promise(() => pool.destroy()))
      yield* calls(pool, 1)
      assert.strictEqual(server.connections(), 1)
      outOfFds = true
      Pool.capPool(pool)
      // Six at once on a pool capped at its one connection: they queue for it and are all answered.
      // At most the one connection undici had already set up in advance is tried (and refused).
      yield* calls(pool, 6)
      assert.strictEqual(server.connections(), 1, "no connection opened while capped")
      assert.isAtMost(refused, 1, "no new connection tried but the one set up in advance")
      outOfFds = false
      yield* Effect.sleep("1100 millis")
      yield* calls(pool, 6)
      assert.isAbove(server.connections(), 1, "the cap lifted")
    })
  )

  it("a key's 401 fails its queued calls once each; a call taken off the queue is not failed", () => {
    const queued: Pool.Queued = new Map()
    const failed: Array<string> = []
    const error = new UpstreamError.Unauthorized({ message: "revoked" })
    const call = (name: string): Pool.Queueable => ({ failQueued: () => failed.push(name) })
    Pool.queue(queued, "k1", call("a"))
    const b = call("b")
    Pool.queue(queued, "k1", b).delete(b)
    Pool.queue(queued, "k2", call("c"))
    Pool.failQueued(queued, "k1", error)
    Pool.failQueued(queued, "k1", error)
    assert.deepStrictEqual(failed, ["a"])
  })
})
