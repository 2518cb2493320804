/**
 * What the command line prints: the `check` table, and a failure as one line with its exit code.
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { CheckRow } from "../Cli.js"

export const usd = (n: number | null) => (n === null ? "unlimited" : `$${n.toFixed(4)}`)

export const table = (rows: ReadonlyArray<CheckRow>): string => {
  const head = ["id", "account", "valid", "limit", "remaining", "reset", "problem"]
  const cells = rows.map((r) => [
    r.id,
    r.account,
    r.valid ? "yes" : "NO",
    r.limit,
    r.remaining,
    r.reset,
    r.problem
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: ReadonlyArray<string>) =>
    c
      .map((s, i) => s.padEnd(widths[i]!))
      .join("  ")
      .trimEnd()
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...cells.map(line)].join("\n")
}

// What a failed lookup means for the key, in a few words. An upstream's own text can echo the
// key, so it is shown only for transport failures (where it is ours: "connect ECONNREFUSED …").
export const problemOf = (e: { readonly _tag: string; readonly message: string }): string => {
  switch (e._tag) {
    case "Unauthorized":
      return "unauthorized (401): revoked or not a key"
    case "InsufficientCredits":
      return "no credit left (402)"
    case "RateLimited":
      return "rate limited (429): try again later"
    case "ServerError":
      return "upstream error (5xx): try again later"
    case "Timeout":
      return "no answer in time"
    case "Transport":
      return `cannot reach the API: ${e.message.replace(/sk-or-\S*/g, "sk-or-…").slice(0, 80)}`
    default:
      return e._tag
  }
}

const usageTags = new Set(["GatewayConfigError", "KeyConfigError", "UsageError"])

/**
 * The line a failure prints and the process's exit code: 2 for a usage or config mistake (the
 * field or flag is in the message), 1 for anything else. A defect's stack trace and a failure's
 * whole cause are for `--verbose`.
 */
export const explain = (cause: Cause.Cause<unknown>): { readonly line: string; readonly code: number } => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) {
    const defect = Cause.squash(cause)
    return {
      line: `error: internal error: ${defect instanceof Error ? defect.message : String(defect)} (--verbose shows the stack trace)`,
      code: 1
    }
  }
  const e = failure.value
  // @effect/cli has printed its own message ("Expected a value following option: '--config'").
  if (ValidationError.isValidationError(e)) return { line: 'run "or-balancer --help" for usage', code: 2 }
  const tag = typeof e === "object" && e !== null && "_tag" in e ? String(e._tag) : ""
  const message =
    typeof e === "object" && e !== null && "message" in e && typeof e.message === "string"
      ? e.message
      : String(e)
  const usage =
    usageTags.has(tag) ||
    (tag === "SimulatorError" && (e as { reason?: unknown }).reason === "InvalidConfig") ||
    (tag === "GatewayError" && (e as { reason?: unknown }).reason === "Config")
  return { line: `error: ${message}`, code: usage ? 2 : 1 }
}

const ANSI = /\x1b\[[0-9;]*m/g

// Help and messages without colour codes when the stream is not a terminal (a pipe, a file, CI).
export const plainWhenPiped = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Console.consoleWith((current) => {
    const strip = (tty: boolean | undefined) => (args: ReadonlyArray<unknown>) =>
      tty === true ? args : args.map((a) => (typeof a === "string" ? a.replace(ANSI, "") : a))
    const out = strip(process.stdout.isTTY)
    const err = strip(process.stderr.isTTY)
    return Effect.withConsole(effect, {
      ...current,
      log: (...args: ReadonlyArray<unknown>) => current.log(...out(args)),
      error: (...args: ReadonlyArray<unknown>) => current.error(...err(args))
    })
  })
