/**
 * The gateway's upstream agent (upstreamAgent.ts) keeps a socket given back exactly as Node's
 * `http.Agent` does, reading the server's `Keep-Alive: timeout=N` hint from the raw header list:
 * a hint too short to reuse the socket safely closes it, a shorter one than the agent's own
 * timeout sets the socket's, and an announced name in any case is read.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as http from "node:http"
import type * as net from "node:net"
import { LeanAgent } from "../src/internal/upstreamAgent.js"

/** A server answering with the given raw `Keep-Alive` header (none when undefined). */
const serverWith = (name: string, hint: string | undefined) =>
  Effect.acquireRelease(
    Effect.async<http.Server & { port: number }>((resume) => {
      const server = http.createServer((_req, res) => {
        // Node's own hint is turned off (keepAliveTimeout 0 sends none): only this one is seen.
        const head: Array<string> = ["content-type", "application/json"]
        if (hint !== undefined) head.push(name, hint)
        res.writeHead(200, head)
        res.end("{}")
      })
      server.keepAliveTimeout = 0
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed(Object.assign(server, { port: (server.address() as net.AddressInfo).port })))
      )
    }),
    (server) => Effect.sync(() => server.closeAllConnections())
  )

/** Two requests one after the other: how many connections they used, and the socket's timeout after the first. */
const twoCalls = (agent: http.Agent, port: number) =>
  Effect.promise(async () => {
    const sockets = new Set<net.Socket>()
    let timeout: number | undefined
    for (let i = 0; i < 2; i++) {
      await new Promise<void>((done, fail) => {
        const req = http.request({ agent, host: "127.0.0.1", port, path: "/", method: "GET" }, (res) => {
          res.resume()
          res.on("end", () => {
            // The agent keeps or drops the socket once the answer's end is processed.
            setImmediate(() => {
              timeout = req.socket?.timeout
              done()
            })
          })
        })
        req.on("socket", (s) => sockets.add(s))
        req.on("error", fail)
        req.end()
      })
    }
    agent.destroy()
    return { connections: sockets.size, timeout }
  })

const cases: ReadonlyArray<{ name: string; hint: string | undefined; agentTimeout?: number }> = [
  { name: "keep-alive", hint: undefined },
  { name: "Keep-Alive", hint: "timeout=5" },
  { name: "keep-alive", hint: "timeout=1" }, // 1 s minus Node's 1 s margin: too short to reuse
  { name: "KEEP-ALIVE", hint: "timeout=0, max=100" },
  { name: "Keep-Alive", hint: "timeout=3", agentTimeout: 10_000 }, // 2 s, under the agent's 10 s
  { name: "Keep-Alive", hint: "timeout=30", agentTimeout: 10_000 }, // the agent's own is shorter
  { name: "Keep-Alive", hint: "max=5, timeout=1" } // not at the start: Node reads no timeout
]

describe("upstream agent", () => {
  for (const c of cases) {
    it.scopedLive(`keeps or drops a socket as Node's agent does: ${c.name}: ${c.hint ?? "(none)"}`, () =>
      Effect.gen(function* () {
        const server = yield* serverWith(c.name, c.hint)
        const options = {
          keepAlive: true,
          ...(c.agentTimeout === undefined ? {} : { timeout: c.agentTimeout })
        }
        const lean = yield* twoCalls(new LeanAgent(options), server.port)
        const node = yield* twoCalls(new http.Agent(options), server.port)
        assert.deepStrictEqual(lean, node)
        // What Node's agent does for each, spelled out, so a change in both would still show.
        const reused = c.hint !== "timeout=1" && c.hint !== "timeout=0, max=100"
        assert.strictEqual(lean.connections, reused ? 1 : 2)
        if (c.hint === "timeout=3") assert.strictEqual(lean.timeout, 2000)
        if (c.hint === "timeout=30") assert.strictEqual(lean.timeout, 10_000)
      })
    )
  }
})

describe("upstream agent pool names", () => {
  it("names a pool as Node's agent does, for any host, port, local address or family in turn", () => {
    const lean = new LeanAgent({ keepAlive: true })
    const node = new http.Agent({ keepAlive: true })
    const inputs: ReadonlyArray<http.ClientRequestArgs | undefined> = [
      { host: "127.0.0.1", port: "8080" },
      { host: "127.0.0.1", port: "8080" },
      { host: "127.0.0.1", port: 8080 },
      { host: "127.0.0.1", port: "8081" },
      { host: "example.test", port: "8081" },
      { host: "example.test", port: "8081", localAddress: "127.0.0.2" },
      { host: "example.test", port: "8081", family: 6 },
      { host: "example.test", port: "8081", family: 0 },
      { host: "example.test", port: "8081", socketPath: "/tmp/x.sock" },
      { port: "8081" },
      {},
      undefined,
      { host: "127.0.0.1", port: "8080" }
    ]
    assert.deepStrictEqual(
      inputs.map((o) => lean.getName(o)),
      inputs.map((o) => node.getName(o))
    )
  })
})
