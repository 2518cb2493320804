/**
 * The `or-balancer` executable itself, started the way the README says (`node
 * packages/gateway/bin/or-balancer.js serve --config gateway.json`, from the folder holding the
 * file), as a child process that every signal is sent to: `serve` prints where it listens, reloads
 * its file when it changes and on SIGHUP without dropping a request in flight, and on SIGTERM stops
 * accepting, drains the request in flight, exits 0 and leaves its port free.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Redacted from "effect/Redacted"
import { spawn, type ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, envOf, fileFor, post, simKeys, TOKEN } from "./GatewaySupport.js"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..")
const bin = path.join(root, "packages/gateway/bin/or-balancer.js")

interface Child {
  readonly proc: ChildProcess
  readonly out: () => string
  readonly exited: Promise<number | null>
}

const start = (args: ReadonlyArray<string>, env: Record<string, string>, cwd: string) =>
  Effect.acquireRelease(
    Effect.sync((): Child => {
      let out = ""
      // The README's command: plain `node` on the repository's bin, which loads the sources in
      // the same process, so the signals below reach the server itself and nothing in between.
      const proc = spawn(process.execPath, [bin, ...args], {
        cwd,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      proc.stdout!.on("data", (b: Buffer) => (out += b.toString("utf8")))
      proc.stderr!.on("data", (b: Buffer) => (out += b.toString("utf8")))
      const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)))
      return { proc, out: () => out, exited }
    }),
    (c) => Effect.sync(() => void (c.proc.exitCode === null && c.proc.kill("SIGKILL")))
  )

const waitFor = <A>(f: () => A | undefined, what: string, child: Child) =>
  Effect.gen(function* () {
    for (let i = 0; i < 600; i++) {
      const a = f()
      if (a !== undefined) return a
      yield* Effect.sleep(Duration.millis(25))
    }
    return assert.fail(`timed out waiting for ${what}; output:\n${child.out()}`)
  })

const portIsFree = (port: number) =>
  Effect.async<boolean>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(false))
    })
    socket.once("error", (e: NodeJS.ErrnoException) => resume(Effect.succeed(e.code === "ECONNREFUSED")))
  })

const statusOf = (url: string) =>
  Effect.promise(
    () => fetch(`${url}/status`).then((r) => r.json()) as Promise<{ keys: Array<{ id: string }> }>
  )

describe("or-balancer serve (child process)", () => {
  it.scopedLive(
    "a file change or SIGHUP reloads without dropping a request in flight; SIGTERM drains and exits 0",
    () =>
      Effect.gen(function* () {
        const sim = yield* Simulator.make({
          seed: 7,
          keys: simKeys(["first", "second"]).map((k) => ({
            ...k,
            faults: { latency: { kind: "fixed" as const, ms: 600 } }
          }))
        })
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "or-balancer-serve-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
        const file = path.join(dir, "gateway.json")
        fs.writeFileSync(file, JSON.stringify(fileFor(sim, {}, ["first"])))
        // `--config` relative to the current folder (a temporary one, not the repository).
        const child = yield* start(["serve", "--config", "gateway.json"], Object.fromEntries(envOf(sim)), dir)
        const url = yield* waitFor(
          () => /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(child.out())?.[1],
          "the gateway to listen",
          child
        )
        assert.deepStrictEqual(
          (yield* statusOf(url)).keys.map((k) => k.id),
          ["first"]
        )

        // A slow request in flight while the file changes and SIGHUP arrives.
        const slow = yield* Effect.fork(post(`${url}/v1/chat/completions`, chatBody()))
        yield* waitFor(
          () => (Effect.runSync(sim.stats).inFlight === 1 ? true : undefined),
          "the slow request",
          child
        )
        // A change to the file reloads it (no signal needed).
        const reloads = () => child.out().split("reloaded").length - 1
        fs.writeFileSync(file, JSON.stringify(fileFor(sim, {}, ["second"])))
        yield* waitFor(() => (reloads() >= 1 ? true : undefined), "the reload on file change", child)
        assert.deepStrictEqual(
          (yield* statusOf(url)).keys.map((k) => k.id),
          ["second"]
        )
        assert.strictEqual((yield* Fiber.join(slow)).status, 200)

        // One edit reloads once (the watcher's events are debounced).
        yield* Effect.sleep(Duration.millis(500))
        assert.strictEqual(reloads(), 1, child.out())

        // SIGHUP re-reads the file without any change to it; two in a row reload once.
        const before = reloads()
        child.proc.kill("SIGHUP")
        child.proc.kill("SIGHUP")
        yield* waitFor(() => (reloads() > before ? true : undefined), "the reload on SIGHUP", child)
        yield* Effect.sleep(Duration.millis(500))
        assert.strictEqual(reloads(), before + 1, child.out())
        assert.isNull(child.proc.exitCode)

        // A new listen port is reported: it takes a restart, the gateway stays where it is.
        fs.writeFileSync(
          file,
          JSON.stringify({ ...fileFor(sim, {}, ["second"]), listen: { host: "127.0.0.1", port: 1 } })
        )
        yield* waitFor(
          () => (/takes effect only on a restart/.test(child.out()) ? true : undefined),
          "the listen change to be reported",
          child
        )
        assert.strictEqual((yield* post(`${url}/v1/chat/completions`, chatBody())).status, 200)

        // SIGTERM with a request in flight: it completes, new connections are refused, exit 0.
        const last = yield* Effect.fork(post(`${url}/v1/chat/completions`, chatBody()))
        yield* waitFor(
          () => (Effect.runSync(sim.stats).inFlight === 1 ? true : undefined),
          "the last request",
          child
        )
        child.proc.kill("SIGTERM")
        const answer = yield* Fiber.join(last)
        assert.strictEqual(answer.status, 200)
        const code = yield* Effect.promise(() => child.exited)
        assert.strictEqual(code, 0, child.out())
        assert.isTrue(yield* portIsFree(Number(new URL(url).port)), "the port is free after the exit")
        const stats = yield* sim.stats
        assert.strictEqual(stats.keys["first"]!.requests, 1)
        assert.strictEqual(stats.keys["second"]!.requests, 2)
        for (const k of sim.keys) assert.notInclude(child.out(), Redacted.value(k.secret))
        assert.notInclude(child.out(), TOKEN)
      }),
    30_000
  )
})
