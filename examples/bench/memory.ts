/**
 * Memory: heap after 1,000,000 select-and-report cycles of the composed stack against after
 * 10,000, with a full GC before each reading. Needs `node --expose-gc`; `run.ts` starts this file
 * in a child process with that flag and reads the JSON line it prints.
 */
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Context from "effect/Context"
import type * as Layer from "effect/Layer"
import * as LayerM from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { fileURLToPath } from "node:url"
import * as Stack from "../src/lib/Stack.js"
import { cycles, env, type Env } from "./selection.js"

export interface Result {
  readonly keys: number
  readonly cyclesSmall: number
  readonly cyclesLarge: number
  readonly heapAfterSmallMB: number
  readonly heapAfterLargeMB: number
  readonly growthPercent: number
  readonly seconds: number
}

const gc = (): number => {
  const g = (globalThis as { gc?: () => void }).gc
  if (g === undefined) throw new Error("run with node --expose-gc")
  g()
  g()
  return process.memoryUsage().heapUsed
}

export const run = async (
  options: { keys?: number; small?: number; large?: number } = {}
): Promise<Result> => {
  const n = options.keys ?? 5
  const small = options.small ?? 10_000
  const large = options.large ?? 1_000_000
  const layer = LayerM.provideMerge(
    Stack.defaultStrategy() as Layer.Layer<KeySelector.KeySelector, never, Env>,
    env(n)
  )
  const runtime = ManagedRuntime.make(layer)
  const selector = Context.get((await runtime.runtime()).context, KeySelector.KeySelector)
  const start = performance.now()
  const batch = 10_000
  await runtime.runPromise(cycles(selector, small))
  const a = gc()
  for (let done = small; done < large; done += batch)
    await runtime.runPromise(cycles(selector, Math.min(batch, large - done)))
  const b = gc()
  await runtime.dispose()
  return {
    keys: n,
    cyclesSmall: small,
    cyclesLarge: large,
    heapAfterSmallMB: Number((a / 2 ** 20).toFixed(2)),
    heapAfterLargeMB: Number((b / 2 ** 20).toFixed(2)),
    growthPercent: Number((((b - a) / a) * 100).toFixed(2)),
    seconds: Number(((performance.now() - start) / 1000).toFixed(1))
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const large = process.argv[2] === undefined ? undefined : Number(process.argv[2])
  run(large === undefined ? {} : { large }).then(
    (r) => console.log(JSON.stringify(r)),
    (e) => {
      console.error(String(e))
      process.exit(1)
    }
  )
}
