/**
 * The simulator's core: a raw `node:http` handler over plain mutable state (see state.ts). Per
 * request it does one map lookup, one JSON.parse, a few counters and one JSON.stringify per
 * answer chunk, so a benchmark measures the client, not the simulator. This module routes paths
 * and owns the listening socket; each concern lives in its own module.
 */
import * as Either from "effect/Either"
import * as http from "node:http"
import type * as net from "node:net"
import type * as Simulator from "../Simulator.js"
import * as Account from "./account.js"
import * as Chat from "./chat.js"
import * as Completions from "./completions.js"
import * as Embeddings from "./embeddings.js"
import * as Inference from "./inference.js"
import * as Responses from "./responses.js"
import * as State from "./state.js"
import * as Stats from "./stats.js"
import { methodNotAllowed, sendError, sendJson } from "./wire.js"

export { defaultModels } from "./model.js"

export interface Core {
  readonly handler: (req: http.IncomingMessage, res: http.ServerResponse) => void
  readonly stats: () => Simulator.Stats
  readonly resetStats: () => void
  readonly simulatedKeys: () => ReadonlyArray<Simulator.SimulatedKey>
  /** False when no key has that label; throws on an invalid update. */
  readonly updateKey: (label: string, update: Simulator.KeyUpdate) => boolean
  /** False when no key has that label. */
  readonly resetCredit: (label: string) => boolean
  readonly setScript: (
    label: string,
    script: ReadonlyArray<Simulator.FaultKind>,
    loop: boolean | undefined
  ) => boolean
  readonly addKey: (key: Simulator.KeyConfig) => Simulator.SimulatedKey
  readonly updateAccount: (name: string, update: Simulator.AccountConfig) => void
  readonly advanceClock: (ms: number) => void
  readonly recentRequests: () => ReadonlyArray<Simulator.SeenRequest>
}

const INFERENCE: Record<string, Inference.Route> = {
  "/api/v1/chat/completions": Chat.route,
  "/api/v1/completions": Completions.route,
  "/api/v1/embeddings": Embeddings.route,
  "/api/v1/responses": Responses.route
}

const MODELS_PREFIX = "/api/v1/models/"

export const makeCore = (config: Simulator.Config): Core => {
  const sim = State.make(config)
  const models = Account.makeModels(sim)

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = req.url ?? "/"
    const q = url.indexOf("?")
    const path = q === -1 ? url : url.slice(0, q)
    const route = INFERENCE[path]
    if (route !== undefined) {
      if (req.method === "POST") return Inference.handle(sim, route, req, res)
      req.resume()
      return methodNotAllowed(res, "POST")
    }
    req.resume()
    const get = req.method === "GET"
    switch (path) {
      case "/api/v1/key":
      case "/api/v1/auth/key":
        return get ? Account.keyInfo(sim, req, res) : methodNotAllowed(res, "GET")
      case "/api/v1/credits":
        return get ? Account.credits(sim, req, res) : methodNotAllowed(res, "GET")
      case "/api/v1/models":
        return get ? models.list(res) : methodNotAllowed(res, "GET")
      case "/api/v1/generation":
        return get
          ? Account.generation(sim, req, res, q === -1 ? "" : url.slice(q + 1))
          : methodNotAllowed(res, "GET")
      // For benchmarks that run the simulator as a separate process.
      case "/__simulator/stats":
        return sendJson(res, 200, JSON.stringify(Stats.stats(sim)))
      case "/__simulator/requests":
        return sendJson(res, 200, JSON.stringify(State.recent(sim)))
      case "/__simulator/reset":
        if (req.method !== "POST") return methodNotAllowed(res, "POST")
        Stats.reset(sim)
        return sendJson(res, 200, "{}")
    }
    if (path.startsWith(MODELS_PREFIX)) {
      if (!get) return methodNotAllowed(res, "GET")
      let id: string
      try {
        id = decodeURIComponent(path.slice(MODELS_PREFIX.length))
      } catch {
        return sendError(res, 400, "Malformed model id", undefined)
      }
      return models.one(res, id)
    }
    return sendError(res, 404, `No route for ${req.method ?? "?"} ${path}`, undefined)
  }

  return {
    handler,
    stats: () => Stats.stats(sim),
    resetStats: () => Stats.reset(sim),
    resetCredit: (label) => {
      const k = sim.byLabel.get(label)
      if (k === undefined) return false
      k.periodUsage = 0
      k.periodStart = State.now(sim)
      return true
    },
    simulatedKeys: () => sim.keys.map(State.simulatedKey),
    updateKey: (label, update) => State.updateKey(sim, label, update),
    setScript: (label, script, loop) => State.setScript(sim, label, script, loop),
    addKey: (key) => State.addKey(sim, key),
    updateAccount: (name, update) => State.updateAccount(sim, name, update),
    advanceClock: (ms) => {
      sim.clockOffsetMs += ms
    },
    recentRequests: () => State.recent(sim)
  }
}

const noop = (): void => {}

export interface Running {
  readonly port: number
  readonly close: (done: () => void) => void
}

export const listen = (
  core: Core,
  port: number,
  cb: (result: Either.Either<Running, string>) => void
): void => {
  const server = http.createServer({ noDelay: true, keepAlive: true }, core.handler)
  // Stalls must last until the client gives up, and idle keep-alive sockets should outlive a benchmark pause.
  server.requestTimeout = 0
  server.headersTimeout = 0
  server.keepAliveTimeout = 60_000
  const sockets = new Set<net.Socket>()
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  })
  const onError = (error: Error) => cb(Either.left(`cannot listen on 127.0.0.1:${port}: ${error.message}`))
  server.once("error", onError)
  // A deep accept queue, so a storm of new connections (an overload test) is queued, not reset.
  server.listen({ port, host: "127.0.0.1", backlog: 4096 }, () => {
    server.off("error", onError)
    server.on("error", noop)
    const address = server.address() as net.AddressInfo
    cb(
      Either.right({
        port: address.port,
        close: (done) => {
          server.close(() => done())
          // Destroy open sockets (keep-alive, stalls, slow bodies) so close never hangs.
          for (const socket of sockets) socket.destroy()
        }
      })
    )
  })
}
