// The gateway bench's "pinned" layout (see `../gateway.ts`): which two CPUs, and pinning with `taskset`.
import { execFileSync } from "node:child_process"
import * as os from "node:os"

export const taskset = (args: ReadonlyArray<string>) =>
  execFileSync("taskset", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })

export const message = (e: unknown) =>
  (e instanceof Error ? e.message : String(e)).split("\n").filter((l) => l.trim() !== "")[0] ??
  "unknown error"

/** "0,2-3" → [0, 2, 3]; undefined for a form this does not read (such as a stride, "0-7:2"). */
const parseCpuList = (list: string): Array<number> | undefined => {
  const cpus: Array<number> = []
  for (const part of list.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim())
    if (m === null) return undefined
    for (let c = Number(m[1]); c <= Number(m[2] ?? m[1]); c++) cpus.push(c)
  }
  return cpus
}

export interface Pinning {
  /** This process's affinity list before pinning, to restore afterwards. */
  readonly original: string
  readonly loadGeneratorAndSimulatorCpu: number
  readonly proxyCpu: number
}

/** The two CPUs to pin to (the first two this process may use), or why the layout cannot run here. */
export const planPinning = (): Pinning | { readonly skipped: string } => {
  const parallelism = os.availableParallelism()
  if (parallelism < 2) return { skipped: `needs two CPUs; os.availableParallelism() is ${parallelism}` }
  let original: string
  try {
    // "pid 123's current affinity list: 0,1"
    const out = taskset(["-c", "-p", String(process.pid)])
    original = out.slice(out.lastIndexOf(":") + 1).trim()
  } catch (e) {
    return { skipped: `taskset is not available (${message(e)})` }
  }
  const cpus = parseCpuList(original)
  if (cpus === undefined) return { skipped: `cannot read taskset's affinity list "${original}"` }
  if (cpus.length < 2) return { skipped: `needs two CPUs; this process may run on ${original} only` }
  return { original, loadGeneratorAndSimulatorCpu: cpus[0]!, proxyCpu: cpus[1]! }
}

/** Pin every thread of `pid` (-a) to `cpus`. */
export const pin = (pid: number | undefined, cpus: string) => {
  if (pid === undefined) throw new Error("a child has no pid")
  taskset(["-a", "-p", "-c", cpus, String(pid)])
}
