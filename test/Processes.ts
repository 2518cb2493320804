/**
 * Child processes for the packaging test: each one is killed by its PID when the test's scope
 * closes, whatever happened, and runs in an environment that carries nothing of the pnpm, npm or
 * vitest that started the test (no `npm_config_*`, no `NODE_OPTIONS` that could load tsx).
 */
import { assert } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { spawn, type ChildProcess } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"

export interface Child {
  readonly proc: ChildProcess
  readonly pid: number
  readonly out: () => string
  readonly exited: Promise<number | null>
}

export const cleanEnv = (extra: Record<string, string> = {}): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && !/^(npm_|pnpm_|vitest|node_options$)/i.test(name)) env[name] = value
  }
  // The `#!/usr/bin/env node` of an installed bin finds this Node first.
  env["PATH"] = [path.dirname(process.execPath), env["PATH"] ?? ""].join(path.delimiter)
  return { ...env, ...extra }
}

const alive = (proc: ChildProcess) => proc.exitCode === null && proc.signalCode === null

export const start = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env?: Record<string, string> }
) =>
  Effect.acquireRelease(
    Effect.sync((): Child => {
      let out = ""
      const proc = spawn(command, args, {
        cwd: options.cwd,
        env: cleanEnv(options.env),
        stdio: ["ignore", "pipe", "pipe"]
      })
      proc.stdout!.on("data", (b: Buffer) => (out += b.toString("utf8")))
      proc.stderr!.on("data", (b: Buffer) => (out += b.toString("utf8")))
      const exited = new Promise<number | null>((resolve) => {
        proc.once("exit", (code) => resolve(code))
        proc.once("error", (e) => {
          out += `\nspawn ${command}: ${e.message}`
          resolve(-1)
        })
      })
      return { proc, pid: proc.pid ?? -1, out: () => out, exited }
    }),
    (child) =>
      Effect.sync(() => {
        if (child.pid > 0 && alive(child.proc)) {
          try {
            process.kill(child.pid, "SIGKILL")
          } catch {
            // gone in the meantime
          }
        }
      })
  )

/** Runs a command to its end; fails the test with its output unless it exits 0. */
export const run = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env?: Record<string, string> }
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const child = yield* start(command, args, options)
      const code = yield* Effect.promise(() => child.exited)
      assert.strictEqual(code, 0, `${command} ${args.join(" ")} exited ${code}:\n${child.out()}`)
      return child.out()
    })
  )

export const waitFor = <A>(f: () => A | undefined, what: string, child: Child, timeoutMs = 30_000) =>
  Effect.gen(function* () {
    for (let waited = 0; waited < timeoutMs; waited += 25) {
      const a = f()
      if (a !== undefined) return a
      if (!alive(child.proc)) break
      yield* Effect.sleep(Duration.millis(25))
    }
    const a = f()
    return a !== undefined ? a : assert.fail(`no ${what}; output:\n${child.out()}`)
  })

/** Whether nothing accepts connections on the port any more. */
export const portIsFree = (port: number): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(false))
    })
    socket.once("error", (e: NodeJS.ErrnoException) => resume(Effect.succeed(e.code === "ECONNREFUSED")))
  })
