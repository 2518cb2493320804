/**
 * Where `AccountPacing` shares what it learns of rate windows with other replicas. Without it (the
 * default) each process learns its own. A fleet's provider (the Redis layer in
 * `@or-balancer/redis`) takes each learned window (an account's limit from `X-RateLimit-Limit`, the
 * window's length, a 429's reset) in the background and hands the fleet's windows, with the number
 * of live replicas, to each consumer at every poll: a window learned on one replica paces all of
 * them, each admitting the limit ÷ the live replicas, with no Redis round trip per request.
 *
 * @since 0.4.0
 */
import * as Context from "effect/Context"

/**
 * What the fleet knows of one window.
 *
 * @since 0.4.0
 * @category Models
 */
export interface Learned {
  /** What the window admits over the whole fleet (`X-RateLimit-Limit`), if a header said. */
  readonly limit: number | undefined
  /** The window's learned length, if known. */
  readonly windowMs: number | undefined
  /** How long from now the window stays closed (a 429's reset); 0 when open. */
  readonly closedMs: number
}

/**
 * A consumer of the fleet's windows (one per `AccountPacing`).
 *
 * @since 0.4.0
 * @category Models
 */
export interface Consumer {
  /** The fleet's window `id` (`account:<name>` or `key:<id>`), with the live replicas sharing it. */
  readonly adopt: (id: string, learned: Learned, replicas: number) => void
}

/**
 * @since 0.4.0
 * @category Models
 */
export interface Service {
  /** Shares what this replica learned of window `id` (in the background; never fails). */
  readonly publish: (id: string, learned: Learned) => void
  /** Registers a consumer; the returned function unregisters it. */
  readonly register: (consumer: Consumer) => () => void
}

/**
 * @since 0.4.0
 * @category Context
 */
export class PacingShare extends Context.Tag("@or-balancer/strategies/PacingShare")<PacingShare, Service>() {}
