/**
 * Schema models of OpenRouter's chat completions API: the request (OpenAI's fields plus
 * OpenRouter's `models`, `provider`, `session_id`, `prompt_cache_key`, `user`, `metadata`), the
 * answer with its `usage.cost`, the streamed chunk, the error body and `GET /api/v1/key`.
 *
 * Every struct keeps fields it does not know (a record rest), so a new API field passes through
 * the client untouched in both directions.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import * as Affinity from "./internal/protocol/affinity.js"

const Rest = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/**
 * @since 0.1.0
 * @category Schemas
 */
export const Message = Schema.Struct(
  {
    role: Schema.String,
    content: Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.Unknown), Schema.Null))
  },
  Rest
)

/**
 * @since 0.1.0
 * @category Models
 */
export type Message = typeof Message.Type

/**
 * A chat completion request. Only what the balancer reads is typed; everything else is kept.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const Request = Schema.Struct(
  {
    model: Schema.optional(Schema.String),
    messages: Schema.Array(Message),
    stream: Schema.optional(Schema.Boolean),
    max_tokens: Schema.optional(Schema.Number),
    temperature: Schema.optional(Schema.Number),
    top_p: Schema.optional(Schema.Number),
    stop: Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.String))),
    tools: Schema.optional(Schema.Array(Schema.Unknown)),
    /** OpenRouter: fallback models, tried in order by OpenRouter itself. */
    models: Schema.optional(Schema.Array(Schema.String)),
    /** OpenRouter: provider routing preferences. */
    provider: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
    session_id: Schema.optional(Schema.String),
    prompt_cache_key: Schema.optional(Schema.String),
    user: Schema.optional(Schema.String),
    metadata: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
  },
  Rest
)

/**
 * @since 0.1.0
 * @category Models
 */
export type Request = typeof Request.Type

/**
 * @since 0.1.0
 * @category Schemas
 */
export const Usage = Schema.Struct(
  {
    prompt_tokens: Schema.Number,
    completion_tokens: Schema.Number,
    total_tokens: Schema.Number,
    /** USD charged for this answer. */
    cost: Schema.optional(Schema.NullOr(Schema.Number)),
    prompt_tokens_details: Schema.optional(
      Schema.NullOr(Schema.Struct({ cached_tokens: Schema.optional(Schema.Number) }, Rest))
    ),
    completion_tokens_details: Schema.optional(
      Schema.NullOr(Schema.Struct({ reasoning_tokens: Schema.optional(Schema.Number) }, Rest))
    )
  },
  Rest
)

/**
 * @since 0.1.0
 * @category Models
 */
export type Usage = typeof Usage.Type

/**
 * The `error` object of an error body or an in-band stream error.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const ErrorObject = Schema.Struct(
  {
    code: Schema.optional(Schema.Union(Schema.Number, Schema.String, Schema.Null)),
    message: Schema.String,
    metadata: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Unknown })))
  },
  Rest
)

/**
 * @since 0.1.0
 * @category Models
 */
export type ErrorObject = typeof ErrorObject.Type

/**
 * `{"error": {"code", "message", "metadata": {"error_type", ...}}}`.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const ErrorBody = Schema.Struct({ error: ErrorObject }, Rest)

/**
 * @since 0.1.0
 * @category Models
 */
export type ErrorBody = typeof ErrorBody.Type

/**
 * @since 0.1.0
 * @category Schemas
 */
export const Choice = Schema.Struct(
  {
    index: Schema.Number,
    message: Schema.Struct(
      {
        role: Schema.String,
        content: Schema.optional(Schema.NullOr(Schema.String))
      },
      Rest
    ),
    finish_reason: Schema.optional(Schema.NullOr(Schema.String))
  },
  Rest
)

/**
 * A complete (non-streamed) answer.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const Response = Schema.Struct(
  {
    id: Schema.String,
    object: Schema.optional(Schema.String),
    created: Schema.optional(Schema.Number),
    model: Schema.String,
    provider: Schema.optional(Schema.String),
    choices: Schema.Array(Choice),
    usage: Schema.optional(Usage)
  },
  Rest
)

/**
 * @since 0.1.0
 * @category Models
 */
export type Response = typeof Response.Type

/**
 * @since 0.1.0
 * @category Schemas
 */
export const ChunkChoice = Schema.Struct(
  {
    index: Schema.Number,
    delta: Schema.optional(
      Schema.Struct(
        {
          role: Schema.optional(Schema.NullOr(Schema.String)),
          content: Schema.optional(Schema.NullOr(Schema.String))
        },
        Rest
      )
    ),
    finish_reason: Schema.optional(Schema.NullOr(Schema.String))
  },
  Rest
)

/**
 * One streamed chunk (`data: {...}`). The last one carries `usage`; an in-band error carries
 * `error` and `finish_reason: "error"`.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const Chunk = Schema.Struct(
  {
    id: Schema.optional(Schema.String),
    object: Schema.optional(Schema.String),
    created: Schema.optional(Schema.Number),
    model: Schema.optional(Schema.String),
    provider: Schema.optional(Schema.String),
    choices: Schema.optionalWith(Schema.Array(ChunkChoice), { default: () => [] }),
    usage: Schema.optional(Schema.NullOr(Usage)),
    error: Schema.optional(ErrorObject)
  },
  Rest
)

/**
 * @since 0.1.0
 * @category Models
 */
export type Chunk = typeof Chunk.Type

/**
 * The `data` of `GET /api/v1/key`.
 *
 * @since 0.1.0
 * @category Schemas
 */
export const KeyData = Schema.Struct(
  {
    label: Schema.optional(Schema.NullOr(Schema.String)),
    limit: Schema.optionalWith(Schema.NullOr(Schema.Number), { default: () => null }),
    limit_remaining: Schema.optionalWith(Schema.NullOr(Schema.Number), { default: () => null }),
    limit_reset: Schema.optional(Schema.NullOr(Schema.String)),
    usage: Schema.optionalWith(Schema.Number, { default: () => 0 }),
    usage_daily: Schema.optional(Schema.Number),
    usage_weekly: Schema.optional(Schema.Number),
    usage_monthly: Schema.optional(Schema.Number),
    is_free_tier: Schema.optionalWith(Schema.Boolean, { default: () => false }),
    expires_at: Schema.optional(Schema.NullOr(Schema.String))
  },
  Rest
)

/**
 * @since 0.1.0
 * @category Schemas
 */
export const KeyResponse = Schema.Struct({ data: KeyData }, Rest)

/**
 * @since 0.1.0
 * @category Models
 */
export type KeyResponse = typeof KeyResponse.Type

/**
 * The request's affinity id for sticky routing: `session_id`, else `prompt_cache_key`, else
 * `user`; an empty string is no id. The same rule as `Protocol.affinityOf`, which it is.
 *
 * @since 0.1.0
 * @category Accessors
 */
export const affinityOf: (request: {
  readonly session_id?: unknown
  readonly prompt_cache_key?: unknown
  readonly user?: unknown
}) => string | undefined = Affinity.affinityOf
