/**
 * Runs an example program against its target: the embedded simulator by default, the real API
 * with `real: true`. Output goes through Effect's `Console`, so a test can capture it.
 *
 * @since 0.1.0
 */
import type * as Key from "@or-balancer/core/Key"
import type * as Simulator from "@or-balancer/simulator/Simulator"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Target from "./Target.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** Use the real API (`OPENROUTER_API_KEYS`) instead of the simulator. */
  readonly real?: boolean | undefined
  /** Replace the console (tests capture the output). */
  readonly console?: Console.Console | undefined
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Example<A, E> {
  /** The simulator the example runs against. */
  readonly simulator: Simulator.Config
  /** Per-key settings (weight, concurrency, models) keyed by the simulated key's label. */
  readonly keys?: ((label: string) => Partial<Omit<Key.Key, "id" | "secret">>) | undefined
  readonly program: Effect.Effect<A, E, Target.Target>
}

/**
 * The example as one self-contained Effect.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const provide = <A, E>(example: Example<A, E>, options: Options = {}): Effect.Effect<A, unknown> => {
  const target: Layer.Layer<Target.Target, unknown> = options.real
    ? Target.layerRealWith(example.keys)
    : Target.layerSimulator(example.simulator, example.keys)
  const program = Effect.provide(example.program, target)
  return options.console === undefined ? program : Effect.withConsole(program, options.console)
}

/**
 * Runs the example to a promise (what each example's `main` does).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const main = <A, E>(example: Example<A, E>, options: Options = {}): Promise<A> =>
  Effect.runPromise(provide(example, options))

/**
 * A console that records every line it is given (and prints nothing), for tests.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const capture = (): { readonly console: Console.Console; readonly lines: Array<string> } => {
  const lines: Array<string> = []
  const record = (...args: ReadonlyArray<unknown>) =>
    Effect.sync(() => {
      lines.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "))
    })
  const noop = () => Effect.void
  const console: Console.Console = {
    [Console.TypeId]: Console.TypeId,
    assert: noop,
    clear: Effect.void,
    count: noop,
    countReset: noop,
    debug: record,
    dir: record,
    dirxml: record,
    error: record,
    group: noop,
    groupEnd: Effect.void,
    info: record,
    log: record,
    table: record,
    time: noop,
    timeEnd: noop,
    timeLog: noop,
    trace: record,
    warn: record,
    unsafe: globalThis.console
  }
  return { console, lines }
}

/**
 * Formats a number of USD.
 *
 * @since 0.1.0
 * @category Formatting
 */
export const usd = (n: number): string => `$${n.toFixed(n < 0.1 ? 5 : 2)}`

/**
 * A bar of `width` cells for `share` (0..1).
 *
 * @since 0.1.0
 * @category Formatting
 */
export const bar = (share: number, width = 30): string => {
  const cells = Math.round(Math.max(0, Math.min(1, share)) * width)
  return "█".repeat(cells) + "·".repeat(width - cells)
}
