/**
 * The gateway over an HTTPS base URL with a path prefix (a key's own): undici's pool speaks TLS
 * to the upstream (here a TLS front for the simulator, its certificate self-signed for 127.0.0.1),
 * answers and streams come through, and calls one after another share one TLS connection.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Effect from "effect/Effect"
import * as net from "node:net"
import * as tls from "node:tls"
import * as Gateway from "../src/Gateway.js"
import { chatBody, configFor, fileFor, post, simKeys } from "./GatewaySupport.js"

// A throwaway certificate for 127.0.0.1 (test only, valid until 2126).
const KEY = [
  "-----BEGIN PRIVATE KEY-----",
  "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgixn/pXxiCTE6xcRm",
  "fKVmAVQYl3Av8xIjHC+WEs/5ZI6hRANCAATlDO7fvRTeg5yKnUaxEDSXLEcM5wmj",
  "6KZvEB44Mq3sFWsSfB1be8rrnANWvpRzqsg+U64CM1kuLT0okUyZ2n8M",
  "-----END PRIVATE KEY-----"
].join("\n")
const CERT = [
  "-----BEGIN CERTIFICATE-----",
  "MIIBmzCCAUGgAwIBAgIUEeSY/Z5j1KCZnDTb6Xa8Mc1D2y4wCgYIKoZIzj0EAwIw",
  "FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNzAwNDI1M1oYDzIxMjYxMTEz",
  "MDA0MjUzWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO",
  "PQMBBwNCAATlDO7fvRTeg5yKnUaxEDSXLEcM5wmj6KZvEB44Mq3sFWsSfB1be8rr",
  "nANWvpRzqsg+U64CM1kuLT0okUyZ2n8Mo28wbTAdBgNVHQ4EFgQU1lqx29+Mlv93",
  "+ZcRJa/6/hKjVnowHwYDVR0jBBgwFoAU1lqx29+Mlv93+ZcRJa/6/hKjVnowDwYD",
  "VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI",
  "zj0EAwIDSAAwRQIgXM3a6+pBegisnnjNiPP6I6NMIGmxEny/hp1LEZJF7zgCIQCw",
  "TaxnIK3+wLVo5OrdGaPSrxuKxJZ79TVD72bHafuZww==",
  "-----END CERTIFICATE-----"
].join("\n")

/** TLS in front of `port` on 127.0.0.1; counts the TLS connections it accepts. */
const tlsFront = (port: number) =>
  Effect.acquireRelease(
    Effect.async<{ server: tls.Server; port: number; connections: () => number }>((resume) => {
      let connections = 0
      const server = tls.createServer({ key: KEY, cert: CERT }, (front) => {
        connections++
        const back = net.connect(port, "127.0.0.1")
        front.on("error", () => back.destroy())
        back.on("error", () => front.destroy())
        front.pipe(back).pipe(front)
      })
      server.listen(0, "127.0.0.1", () =>
        resume(
          Effect.succeed({
            server,
            port: (server.address() as net.AddressInfo).port,
            connections: () => connections
          })
        )
      )
    }),
    ({ server }) => Effect.sync(() => server.close())
  )

describe("an https upstream", () => {
  it.scopedLive(
    "with a path prefix, as a key's own base URL: answers and streams pass, calls in turn share one TLS connection",
    () =>
      Effect.gen(function* () {
        // The certificate is self-signed: trusted for this file's process only (vitest runs each
        // file in its own), as `NODE_EXTRA_CA_CERTS` would, had it been set at start.
        const before = process.env.NODE_TLS_REJECT_UNAUTHORIZED
        process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0"
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            if (before === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED
            else process.env.NODE_TLS_REJECT_UNAUTHORIZED = before
          })
        )
        const sim = yield* Simulator.make({ seed: 3, keys: simKeys(["tls", "plain"]) })
        const simUrl = new URL(sim.baseUrl)
        const front = yield* tlsFront(Number(simUrl.port))
        const baseUrl = `https://127.0.0.1:${front.port}${simUrl.pathname}`
        assert.notStrictEqual(simUrl.pathname.replace(/\/+$/, ""), "", "the base URL has a path prefix")
        // Key `tls` has its own base URL (its own pool); `plain` uses the config's, the simulator's.
        const keys = fileFor(sim).keys.map((k) => (k.id === "tls" ? { ...k, baseUrl } : k))
        const gw = yield* Gateway.make(yield* configFor(sim, { keys }))
        const url = `${gw.url}/v1/chat/completions`
        for (let i = 0; i < 4; i++) {
          const whole = yield* post(url, chatBody())
          assert.strictEqual(whole.status, 200, whole.text)
          assert.include(whole.text, '"choices"')
        }
        for (let i = 0; i < 2; i++) {
          const stream = yield* post(url, chatBody({ stream: true }))
          assert.strictEqual(stream.status, 200, stream.text)
          assert.include(stream.text, "data: [DONE]")
        }
        const stats = yield* sim.stats
        assert.deepStrictEqual([stats.keys["tls"]!.requests, stats.keys["plain"]!.requests], [3, 3])
        assert.strictEqual(front.connections(), 1, "key tls's calls, over TLS, on one connection")
      })
  )
})
