// The gateway bench's children (see `../gateway.ts`): each target in its own process, forked from the
// bench's entry with a role; CPU figures and stop requests over IPC.
import { fork, type ChildProcess } from "node:child_process"
import * as diagnostics from "node:diagnostics_channel"
import * as fs from "node:fs"
import type * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { LOG } from "./settings.js"

export type ToChild = { readonly type: "cpu" } | { readonly type: "stop" }
export type FromChild =
  | { readonly type: "ready"; readonly url: string; readonly secrets?: ReadonlyArray<string> }
  | { readonly type: "cpu"; readonly micros: number; readonly sockets: number }
  | { readonly type: "error"; readonly message: string }

export interface Child {
  readonly process: ChildProcess
  readonly url: string
  readonly secrets: ReadonlyArray<string>
  /** The child's total CPU (user + system) so far, in µs, and the client sockets it has connected. */
  readonly cpu: () => Promise<{ readonly micros: number; readonly sockets: number }>
  readonly stop: () => Promise<void>
}

/** The bench's entry: each child is that file, forked with its role. */
const here = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "gateway.ts")

const logOut = () =>
  process.env.OR_GATEWAY_BENCH_LOG_FILE === undefined
    ? ("ignore" as const)
    : fs.openSync(process.env.OR_GATEWAY_BENCH_LOG_FILE, "a")

export const spawnChild = (
  role: string,
  env: Record<string, string>,
  execArgv: Array<string> = [],
  // Another checkout's copy of this file (a same-run A/B), run from its own directory.
  file: string = here
) =>
  new Promise<Child>((resolve, reject) => {
    const child = fork(file, [], {
      cwd: path.join(path.dirname(file), ".."),
      execArgv: [...execArgv, "--import", "tsx"],
      env: { ...process.env, OR_GATEWAY_BENCH_ROLE: role, ...env },
      stdio: [
        "ignore",
        role === "gateway" && (LOG ?? env.OR_GATEWAY_BENCH_LOG) !== undefined ? logOut() : "inherit",
        "inherit",
        "ipc"
      ]
    })
    // Answers come back in order: a FIFO of waiters.
    const cpuWaiters: Array<(usage: { readonly micros: number; readonly sockets: number }) => void> = []
    child.on("message", (m: FromChild) => {
      if (m.type === "ready") {
        resolve({
          process: child,
          url: m.url,
          secrets: m.secrets ?? [],
          cpu: () =>
            new Promise((r) => {
              cpuWaiters.push(r)
              child.send({ type: "cpu" } satisfies ToChild)
            }),
          stop: () =>
            new Promise((r) => {
              if (child.exitCode !== null) return r()
              child.once("exit", () => r())
              child.send({ type: "stop" } satisfies ToChild)
            })
        })
      } else if (m.type === "cpu") {
        cpuWaiters.shift()?.({ micros: m.micros, sockets: m.sockets })
      } else reject(new Error(`${role}: ${m.message}`))
    })
    child.once("exit", (code) => reject(new Error(`${role} exited with ${code}`)))
  })

/** Client sockets this process has connected (a proxy's connections to its upstream). */
let connectedSockets = 0
diagnostics.subscribe("net.client.socket", (message) => {
  ;(message as { socket: net.Socket }).socket.once("connect", () => connectedSockets++)
})

/**
 * Which part of a child's CPU time is reported: both (default), or `GATEWAY_CPU_PART=user` /
 * `system` alone, to tell the proxies' own JavaScript from the kernel's socket work.
 */
const CPU_PART = process.env.GATEWAY_CPU_PART

/** In a child: answer CPU queries and stop requests from the parent. */
export const serveIpc = (stop: () => Promise<void>) => {
  process.on("message", (m: ToChild) => {
    if (m.type === "cpu") {
      const u = process.cpuUsage()
      const micros = CPU_PART === "user" ? u.user : CPU_PART === "system" ? u.system : u.user + u.system
      process.send!({ type: "cpu", micros, sockets: connectedSockets } satisfies FromChild)
    } else {
      // Give a CPU profile (if any) the normal exit it needs to be written.
      stop().then(
        () => process.exit(0),
        () => process.exit(1)
      )
    }
  })
}
