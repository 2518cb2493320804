/**
 * The upstream pool (upstream.ts, undici's Pool): keep-alive connections to the upstream are
 * reused, and a burst opens no more connections than it has calls in flight.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Effect from "effect/Effect"
import * as diagnostics from "node:diagnostics_channel"
import type * as net from "node:net"
import * as Gateway from "../src/Gateway.js"
import { chatBody, configFor, post, simKeys } from "./GatewaySupport.js"

describe("upstream pool", () => {
  it.scopedLive(
    "keep-alive: requests one after another share one upstream connection; bursts of 8 open at most 8 and reuse them",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({ seed: 3, keys: simKeys(["a", "b"]) })
        const gw = yield* Gateway.make(yield* configFor(sim))
        const port = Number(new URL(sim.baseUrl).port)
        // Connections this process opens to the simulator (the gateway runs in this process).
        let opened = 0
        const onSocket = (message: unknown) => {
          const socket = (message as { socket: net.Socket }).socket
          socket.once("connect", () => {
            if (socket.remotePort === port) opened++
          })
        }
        diagnostics.subscribe("net.client.socket", onSocket)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => diagnostics.unsubscribe("net.client.socket", onSocket))
        )
        const url = `${gw.url}/v1/chat/completions`
        for (let i = 0; i < 20; i++) assert.strictEqual((yield* post(url, chatBody())).status, 200)
        assert.strictEqual(opened, 1)
        for (let round = 0; round < 3; round++) {
          const answers = yield* Effect.all(
            Array.from({ length: 8 }, () => post(url, chatBody())),
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(
            answers.map((a) => a.status),
            Array.from({ length: 8 }, () => 200)
          )
        }
        assert.isAtMost(opened, 8)
      })
  )
})
