/**
 * The live set of keys. Backed by a `SubscriptionRef`, so keys can be added or removed while
 * requests are in flight: a lease already handed out keeps its key; the next selection sees the
 * new set.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as Key from "./Key.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  readonly get: Effect.Effect<ReadonlyArray<Key.Key>>
  /** Replace every key at once (config reload). Validated like start-up. */
  readonly set: (keys: ReadonlyArray<Key.Key>) => Effect.Effect<void, Key.KeyConfigError>
  readonly add: (key: Key.Key) => Effect.Effect<void, Key.KeyConfigError>
  /** Removes the key with this id; false when there was none. */
  readonly remove: (id: string) => Effect.Effect<boolean>
  /** The current set, then every change. */
  readonly changes: Stream.Stream<ReadonlyArray<Key.Key>>
  /** The current keys, read synchronously (for `KeySelector.decide`); without it, a decision reads them through a `Wait`. */
  readonly unsafeGet?: (() => ReadonlyArray<Key.Key>) | undefined
}

/**
 * @since 0.1.0
 * @category Context
 */
export class KeyPool extends Context.Tag("@or-balancer/core/KeyPool")<KeyPool, Service>() {}

/**
 * @since 0.1.0
 * @category Constructors
 */
export const make = (keys: ReadonlyArray<Key.Key>): Effect.Effect<Service, Key.KeyConfigError> =>
  Effect.gen(function* () {
    const valid = yield* Key.validateAll(keys)
    const ref = yield* SubscriptionRef.make(valid)
    // Mirrors the ref, written inside its updates (which run one at a time), for `unsafeGet`.
    let current = valid
    // Each change validates and writes inside one update of the ref (its updates run one at a
    // time), so two concurrent `add`s both land: neither reads the pool before the other wrote.
    const update = (f: (cur: ReadonlyArray<Key.Key>) => ReadonlyArray<Key.Key>) =>
      SubscriptionRef.updateEffect(ref, (cur) =>
        Effect.map(Key.validateAll(f(cur)), (v) => {
          current = v
          return v
        })
      )
    return KeyPool.of({
      get: SubscriptionRef.get(ref),
      set: (next) => update(() => next),
      add: (key) => update((cur) => [...cur, key]),
      remove: (id) =>
        SubscriptionRef.modify(ref, (cur) => {
          const next = cur.filter((k) => k.id !== id)
          current = next
          return [next.length !== cur.length, next]
        }),
      changes: ref.changes,
      unsafeGet: () => current
    })
  })

/**
 * @since 0.1.0
 * @category Layers
 */
export const layer = (keys: ReadonlyArray<Key.Key>): Layer.Layer<KeyPool, Key.KeyConfigError> =>
  Layer.effect(KeyPool, make(keys))

/**
 * Parses `OPENROUTER_API_KEYS`-style text: comma separated entries, each `secret` or
 * `label=secret`. Errors name the entry by position, never by content.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const parseKeyList = (
  text: Redacted.Redacted<string>,
  name = "OPENROUTER_API_KEYS"
): Effect.Effect<ReadonlyArray<Key.Key>, Key.KeyConfigError> =>
  Effect.forEach(
    Redacted.value(text)
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s.length > 0),
    (entry, i) => {
      const eq = entry.indexOf("=")
      const input =
        eq > 0 ? { id: entry.slice(0, eq).trim(), secret: entry.slice(eq + 1).trim() } : { secret: entry }
      return Key.decode(input, `${name}[${i}]`)
    }
  )

/**
 * Keys from `Config`: `OPENROUTER_API_KEYS` (comma separated, each `secret` or `label=secret`).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerConfig = (
  name = "OPENROUTER_API_KEYS"
): Layer.Layer<KeyPool, Key.KeyConfigError | import("effect/ConfigError").ConfigError> =>
  Layer.effect(
    KeyPool,
    Config.redacted(name).pipe(
      Effect.flatMap((text) => parseKeyList(text, name)),
      Effect.flatMap(make)
    )
  )

/**
 * Decodes a parsed JSON value `{ "keys": [...] }` (or a bare array) into keys.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const decodeKeys = (json: unknown): Effect.Effect<ReadonlyArray<Key.Key>, Key.KeyConfigError> => {
  const list = Array.isArray(json)
    ? json
    : typeof json === "object" && json !== null && Array.isArray((json as { keys?: unknown }).keys)
      ? ((json as { keys: Array<unknown> }).keys as Array<unknown>)
      : undefined
  if (list === undefined) {
    return Effect.fail(new Key.KeyConfigError({ path: "keys", message: "keys: expected an array of keys" }))
  }
  return Effect.forEach(list, (entry, i) => Key.decode(entry, `keys[${i}]`)).pipe(
    Effect.flatMap(Key.validateAll)
  )
}

/**
 * Keys from a JSON file, `{ "keys": [{ "id", "secret", "account", "weight", ... }] }`.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerFile = (path: string): Layer.Layer<KeyPool, Key.KeyConfigError, FileSystem.FileSystem> =>
  Layer.effect(
    KeyPool,
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const text = yield* fs
        .readFileString(path)
        .pipe(
          Effect.mapError(
            (e) => new Key.KeyConfigError({ path, message: `${path}: cannot read (${e.message})` })
          )
        )
      const json = yield* Effect.try({
        try: () => JSON.parse(text) as unknown,
        // JSON.parse's message quotes the text, which may hold a secret: say only where.
        catch: () => new Key.KeyConfigError({ path, message: `${path}: not valid JSON` })
      })
      return yield* decodeKeys(json).pipe(Effect.flatMap(make))
    })
  )
