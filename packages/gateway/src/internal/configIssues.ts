import * as Key from "@or-balancer/core/Key"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/**
 * Config problems as a person reads them. Schema's own messages are written for programmers: a
 * field declared optional fails twice ("must be a positive integer; Expected undefined, actual
 * -1"), a nested object that is not one prints the whole type (2,500 characters for the config
 * root), a literal union lists each literal as its own issue. `issues` turns them into what a
 * person editing the file needs: the first field at fault and what it must be.
 */

export interface Issue {
  readonly path: string
  readonly message: string
}

export const renderPath = (path: ReadonlyArray<PropertyKey>): string => {
  let out = ""
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out === "" ? String(p) : `.${String(p)}`
  return out === "" ? "(root)" : out
}

const scrub = (s: string) => s.replace(/sk-or-[^\s"',]*/g, "sk-or-…")

/** "must be …" for one of Schema's default messages; a custom message is kept as written. */
const plain = (message: string): string => {
  if (message === "is missing") return "is required"
  const unexpected = /^is unexpected, expected: (.*)$/.exec(message)
  if (unexpected !== undefined && unexpected !== null) {
    return `is not a known field (known: ${unexpected[1]!.replace(/"/g, "").split(" | ").join(", ")})`
  }
  const expected = /^Expected ([\s\S]*?), actual ([\s\S]*)$/.exec(message)
  if (expected === null) return message
  const [, type, actual] = expected as unknown as [string, string, string]
  const got = actual.length <= 40 ? ` (got ${actual})` : ""
  if (type.startsWith("{") || type.startsWith("Record<")) return "must be an object"
  if (type.startsWith("ReadonlyArray<") || type.startsWith("readonly [")) return "must be an array"
  if (type === "number") return `must be a number${got}`
  if (type === "string") return `must be a string${got}`
  if (type === "boolean") return `must be true or false${got}`
  if (/^"[^"]*"( \| "[^"]*")*$/.test(type)) {
    const options = type.split(" | ")
    return options.length === 1 ? `must be ${type}${got}` : `must be one of ${options.join(", ")}${got}`
  }
  if (/^(false|true|null)$/.test(type)) return `must be ${type}${got}`
  if (/^an? /.test(type)) return `must be ${type}${got}`
  return `is not valid${got}`
}

/**
 * The issues of a decoding failure, one per field, most specific first: the `undefined` half of
 * an optional field is dropped, an object's issue is dropped when one of its fields has its own,
 * and the several alternatives of one field are said together ("must be false or an object").
 */
export const issues = (error: ParseResult.ParseError): ReadonlyArray<Issue> => {
  const raw = ParseResult.ArrayFormatter.formatErrorSync(error)
    .filter((i) => !/^Expected undefined, actual /.test(i.message))
    .map((i) => ({ path: renderPath(i.path), message: plain(scrub(i.message)) }))
  const inside = (child: string, parent: string) =>
    parent === "(root)" ? child !== parent : child.startsWith(parent + ".") || child.startsWith(parent + "[")
  const specific = raw.filter((i) => !raw.some((o) => inside(o.path, i.path)))
  const byPath = new Map<string, Array<string>>()
  for (const i of specific) {
    const list = byPath.get(i.path) ?? []
    if (!list.includes(i.message)) list.push(i.message)
    byPath.set(i.path, list)
  }
  return Array.from(byPath, ([path, messages]) => ({
    path,
    message:
      messages.length === 1
        ? messages[0]!
        : // Alternatives of one union: "must be false" + "must be an object" → "must be false or an object".
          messages.every((m) => m.startsWith("must be "))
          ? `must be ${messages.map((m) => m.slice("must be ".length).replace(/ \(got .*\)$/, "")).join(" or ")}`
          : messages.join("; ")
  }))
}

/** One line: the first field at fault, and how many more there are. */
export const summary = (list: ReadonlyArray<Issue>): Issue => {
  const first = list[0] ?? { path: "(root)", message: "is not valid" }
  const more = list.length - 1
  return {
    path: first.path,
    message: `${first.path}: ${first.message}${more > 0 ? ` (and ${more} more problem${more > 1 ? "s" : ""})` : ""}`
  }
}

/** An http(s) URL with a host, as the transport's URL parser reads it ("http://bad host" is not). */
export const isHttpUrl = (s: string): boolean => {
  try {
    const u = new URL(s)
    return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== ""
  } catch {
    return false
  }
}

// The strategies that read a key's weight: the weighted bases, least-busy (load per unit of
// weight) and sticky (weighted rendezvous hashing).
const weightAware: ReadonlySet<string> = new Set(["weighted", "weighted-random", "least-busy", "sticky"])

/** Warnings for key fields no strategy of the stack reads (a weight of 1 is the default). */
export const unreadFields = (
  stack: ReadonlyArray<string>,
  keys: ReadonlyArray<{ readonly weight: number; readonly maxConcurrency: number | undefined }>
): ReadonlyArray<string> => {
  const out: Array<string> = []
  const weighted = keys.flatMap((k, i) => (k.weight === 1 ? [] : [`keys[${i}].weight`]))
  if (weighted.length > 0 && !stack.some((name) => weightAware.has(name))) {
    out.push(
      `${weighted.join(", ")}: no effect under ${stack.join(" > ")}; use "weighted", "weighted-random" or "least-busy" as the base strategy to spread load by weight`
    )
  }
  const capped = keys.flatMap((k, i) => (k.maxConcurrency === undefined ? [] : [`keys[${i}].maxConcurrency`]))
  if (capped.length > 0 && !stack.includes("concurrency-limited")) {
    out.push(
      `${capped.join(", ")}: no effect under ${stack.join(" > ")}; add "concurrency-limited" to the strategy stack to cap requests in flight`
    )
  }
  return out
}

/**
 * What is wrong with a secret, in `Key.Secret`'s own words ("is too short to be an OpenRouter
 * key", `must start with "sk-or-"`): more use than "not an OpenRouter key" to someone holding a
 * real one. The reasons never quote the value.
 */
export const secretProblem = (value: string): string => {
  const result = Schema.decodeUnknownEither(Key.Secret)(value)
  if (result._tag === "Right") return "is not a valid OpenRouter key"
  const reason = ParseResult.ArrayFormatter.formatErrorSync(result.left)[0]?.message
  return reason === undefined || /sk-or-[^"]/.test(reason) ? "is not an OpenRouter key (sk-or-…)" : reason
}
