// The gateway's stdout captured in a test (it runs in the test's process): its JSON log lines.
import { assert } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { vi } from "vitest"

export type Line = Record<string, any>

/** Everything written to stdout while the scope is open (not passed on: the test reads it). */
export const captureStdout = Effect.acquireRelease(
  Effect.sync(() => {
    const raw: Array<string> = []
    const spy = vi.spyOn(process.stdout, "write").mockImplementation(((chunk: string | Uint8Array) => {
      raw.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"))
      return true
    }) as typeof process.stdout.write)
    const lines = (): Array<Line> =>
      raw
        .join("")
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Line)
    return { raw, spy, lines }
  }),
  ({ spy }) => Effect.sync(() => spy.mockRestore())
)

export type Capture = Effect.Effect.Success<typeof captureStdout>

export const requestsOf = (c: Capture) => c.lines().filter((l) => l.msg === "request")
export const eventsOf = (c: Capture, name: string) =>
  c.lines().filter((l) => l.msg === "event" && l.event === name)

export const waitFor = <A>(f: () => A | undefined, what: string, c: Capture) =>
  Effect.gen(function* () {
    for (let i = 0; i < 300; i++) {
      const a = f()
      if (a !== undefined) return a
      yield* Effect.sleep(Duration.millis(10))
    }
    return assert.fail(`timed out waiting for ${what}; stdout:\n${c.raw.join("")}`)
  })

export const lineFor = (c: Capture, id: string) =>
  waitFor(() => requestsOf(c).find((l) => l.id === id), `the line of ${id}`, c)
