/**
 * One OpenRouter API key and what the balancer knows of it.
 *
 * The secret is `Redacted` from decoding to the wire: only the HTTP layer, where it writes
 * the `Authorization` header, calls `Redacted.value`. Everything else names a key by `id`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Key {
  /** Safe to log: the configured label, or a fingerprint such as `sk-or-…a1b2`. */
  readonly id: string
  readonly secret: Redacted.Redacted<string>
  /** Keys of one account share OpenRouter's request-rate limit. */
  readonly account: string | undefined
  /** Relative share of traffic, a positive integer. */
  readonly weight: number
  readonly maxConcurrency: number | undefined
  /** Model patterns this key may serve (`anthropic/*`, exact ids, `*`); undefined means all. */
  readonly models: ReadonlyArray<string> | undefined
  readonly baseUrl: string | undefined
}

const SECRET_PREFIX = "sk-or-"

/**
 * A secret must look like an OpenRouter key. The messages never include the value itself.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const Secret = Schema.String.pipe(
  Schema.filter((s) => {
    if (!s.startsWith(SECRET_PREFIX)) return `must start with "${SECRET_PREFIX}"`
    if (s.length < SECRET_PREFIX.length + 8) return "is too short to be an OpenRouter key"
    if (/\s/.test(s)) return "must not contain white space"
    // A header Node refuses to send: the key could never make a call.
    if (/[\x00-\x1f\x7f]/.test(s)) return "must not contain control characters"
    return true
  }),
  Schema.annotations({ identifier: "Secret" })
)

/**
 * An integer above zero, failing with "must be a positive integer".
 *
 * @since 0.1.0
 * @category Schemas
 */
export const PositiveInt = Schema.Int.pipe(Schema.positive({ message: () => "must be a positive integer" }))

/**
 * How a key is written in config: the secret as a plain string (from env or file).
 *
 * @since 0.1.0
 * @category Schemas
 */
export const KeyInput = Schema.Struct({
  id: Schema.optional(Schema.NonEmptyTrimmedString),
  secret: Secret,
  account: Schema.optional(Schema.NonEmptyTrimmedString),
  weight: Schema.optional(PositiveInt),
  maxConcurrency: Schema.optional(PositiveInt),
  models: Schema.optional(Schema.Array(Schema.NonEmptyTrimmedString)),
  baseUrl: Schema.optional(Schema.String)
})

/**
 * @since 0.1.0
 * @category Models
 */
export type KeyInput = typeof KeyInput.Type

/**
 * A key's config was wrong. `path` names the entry and field; the message never holds a secret.
 *
 * @since 0.1.0
 * @category Errors
 */
export class KeyConfigError extends Schema.TaggedError<KeyConfigError>()("KeyConfigError", {
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * A log-safe fingerprint of a secret: its prefix and last four characters.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const fingerprint = (secret: Redacted.Redacted<string>): string => {
  const s = Redacted.value(secret)
  return `${SECRET_PREFIX}…${s.slice(-4)}`
}

/**
 * Builds a key from already-valid parts.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = (input: {
  readonly secret: Redacted.Redacted<string>
  readonly id?: string | undefined
  readonly account?: string | undefined
  readonly weight?: number | undefined
  readonly maxConcurrency?: number | undefined
  readonly models?: ReadonlyArray<string> | undefined
  readonly baseUrl?: string | undefined
}): Key => ({
  id: input.id ?? fingerprint(input.secret),
  secret: input.secret,
  account: input.account,
  weight: input.weight ?? 1,
  maxConcurrency: input.maxConcurrency,
  models: input.models,
  baseUrl: input.baseUrl
})

const formatIssues = (error: ParseResult.ParseError, where: string): KeyConfigError => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  const path = [where, ...(first?.path ?? []).map(String)].join(".")
  // ArrayFormatter's messages can quote the actual value for some schemas; ours are all
  // custom for the secret, and we never echo `actual` for anything else either.
  const message = issues
    .map((i) => `${[where, ...i.path.map(String)].join(".")}: ${safeMessage(i)}`)
    .join("; ")
  return new KeyConfigError({ path, message })
}

const safeMessage = (issue: ParseResult.ArrayFormatterIssue): string =>
  issue._tag === "Type" && issue.path[issue.path.length - 1] === "secret"
    ? "must be an OpenRouter key (sk-or-…)"
    : issue.message.replace(/sk-or-[^\s"',]*/g, "sk-or-…")

/**
 * Decodes one key entry; `where` names it in errors (e.g. `keys[2]`).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const decode = (input: unknown, where: string): Effect.Effect<Key, KeyConfigError> =>
  Schema.decodeUnknown(KeyInput, { errors: "all", onExcessProperty: "error" })(input).pipe(
    Effect.mapError((e) => formatIssues(e, where)),
    Effect.map((k) =>
      make({
        secret: Redacted.make(k.secret),
        id: k.id,
        account: k.account,
        weight: k.weight,
        maxConcurrency: k.maxConcurrency,
        models: k.models,
        baseUrl: k.baseUrl
      })
    )
  )

const isHttpUrl = (s: string): boolean => {
  try {
    const u = new URL(s)
    return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== ""
  } catch {
    return false
  }
}

/**
 * Checks a whole set of keys: not empty, ids unique, secrets unique, base URLs that parse.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const validateAll = (keys: ReadonlyArray<Key>): Effect.Effect<ReadonlyArray<Key>, KeyConfigError> => {
  if (keys.length === 0) {
    return Effect.fail(new KeyConfigError({ path: "keys", message: "keys: the pool has no keys" }))
  }
  const ids = new Map<string, number>()
  const secrets = new Map<string, number>()
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!
    const sameId = ids.get(k.id)
    if (sameId !== undefined) {
      return Effect.fail(
        new KeyConfigError({
          path: `keys[${i}].id`,
          message: `keys[${i}].id: duplicate id "${k.id}" (also keys[${sameId}])`
        })
      )
    }
    ids.set(k.id, i)
    const s = Redacted.value(k.secret)
    const sameSecret = secrets.get(s)
    if (sameSecret !== undefined) {
      return Effect.fail(
        new KeyConfigError({
          path: `keys[${i}].secret`,
          message: `keys[${i}].secret: the same secret as keys[${sameSecret}] ("${keys[sameSecret]!.id}")`
        })
      )
    }
    secrets.set(s, i)
    // A base URL that is no http(s) URL would make every call with this key fail: refused here,
    // at start-up or reload, rather than on the first request routed to the key.
    if (k.baseUrl !== undefined && !isHttpUrl(k.baseUrl)) {
      return Effect.fail(
        new KeyConfigError({
          path: `keys[${i}].baseUrl`,
          message: `keys[${i}].baseUrl: must be an http(s) URL`
        })
      )
    }
  }
  return Effect.succeed(keys)
}

/**
 * Does this key serve `model`, according to its own `models` list?
 *
 * @since 0.1.0
 * @category Predicates
 */
export const servesModel = (key: Key, model: string | undefined): boolean =>
  key.models === undefined || model === undefined || key.models.some((p) => matchesModel(p, model))

/**
 * Model pattern matching: `*` matches all, `vendor/*` a prefix, anything else exactly.
 *
 * @since 0.1.0
 * @category Predicates
 */
export const matchesModel = (pattern: string, model: string): boolean => {
  if (pattern === "*") return true
  if (pattern.endsWith("*")) return model.startsWith(pattern.slice(0, -1))
  return pattern === model
}
