/**
 * A real redis-server per test file, started by the project's own script on a free loopback port
 * (installing Debian's package when missing) and stopped by PID. No mock of Redis anywhere.
 */
import { execFileSync } from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import { Redis } from "ioredis"
import * as RedisStore from "../src/RedisStore.js"

const SCRIPT = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../../../scripts/redis.sh")

export interface Server {
  readonly port: number
  readonly url: string
  pid(): number
  /** Stops it (SIGTERM, then SIGKILL) and waits until it is gone. */
  stop(): void
  /** Starts a new, empty server on the same port. */
  start(): void
  /** A plain client for test set-up and inspection (SCRIPT FLUSH, INFO). */
  admin(): Redis
  /** Closes the admin clients and stops the server: for `afterAll`. */
  close(): void
}

export const startRedis = (): Server => {
  const launch = (port?: number) => {
    const out = execFileSync(SCRIPT, port === undefined ? ["start"] : ["start", String(port)], {
      encoding: "utf8"
    }).trim()
    const [p, pid] = out.split(" ").map(Number)
    return { port: p!, pid: pid! }
  }
  let current: { port: number; pid: number } | undefined = launch()
  const port = current.port
  const admins: Array<Redis> = []
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    pid: () => current?.pid ?? -1,
    stop: () => {
      if (current === undefined) return
      execFileSync(SCRIPT, ["stop", String(current.pid)])
      current = undefined
    },
    start: () => {
      if (current === undefined) current = launch(port)
    },
    admin: () => {
      const c = new Redis(port, "127.0.0.1", { lazyConnect: false, maxRetriesPerRequest: 1 })
      c.on("error", () => {})
      admins.push(c)
      return c
    },
    close() {
      for (const c of admins) c.disconnect()
      this.stop()
    }
  }
}

/** `n` replicas' clients on one server. */
export const replicasOn = (server: Server, n: number) =>
  Effect.all(Array.from({ length: n }, () => RedisStore.make({ url: server.url })))

/** Runs `e` as the replica whose client is `store`. */
export const asReplica = <A, E>(store: RedisStore.Service, e: Effect.Effect<A, E, RedisStore.RedisStore>) =>
  Effect.provideService(e, RedisStore.RedisStore, store)

/** Key ids no other test (or earlier run on the same server) has used. */
export const freshKeys = (prefix: string) => {
  let n = 0
  return () => `${prefix}-${++n}-${Math.floor(performance.now())}`
}
