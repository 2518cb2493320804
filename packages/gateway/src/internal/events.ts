/**
 * Event lines for what happens to keys: the health-aware strategy ejecting a key, its half-open
 * trial or probe, its recovery; a `Retry-After` cooldown the balancer sets on a key or an account.
 * Both keep that state in the `StateStore`, so the gateway watches the writes to those two
 * namespaces in its own store and compares each entry before and after: no hook in the library,
 * and the same events whichever strategy or path wrote them. Other namespaces pass straight
 * through (one string comparison per write).
 */
import type * as StateStore from "@or-balancer/core/StateStore"
import * as Effect from "effect/Effect"
import * as Log from "./log.js"
import type { ServerState } from "./state.js"

/** Where the health-aware strategy and the balancer keep their state (see their modules). */
const HEALTH = "or-balancer/health"
const COOLDOWN = "or-balancer/cooldown"

interface HealthRecord {
  readonly ejections?: number
  readonly until?: number | undefined
  readonly reason?: string | undefined
  readonly testing?: boolean | undefined
}

const iso = (ms: number) => new Date(ms).toISOString()

/** The events between two states of one entry. */
const changed = (
  state: ServerState | undefined,
  ns: string,
  id: string,
  before: unknown,
  after: unknown
): void => {
  // The common write (a success clearing a healthy key's absent record) changes nothing.
  if (before === after || state === undefined) return
  const engine = state.engine
  const settings = Log.settingsOf(engine.config)
  const clock = engine.built.clock
  const now = clock.unsafeCurrentTimeMillis()
  if (ns === COOLDOWN) {
    const until = after as number | undefined
    if (until === undefined || until <= now || until <= ((before as number | undefined) ?? 0)) return
    const [scope, ...rest] = id.split(":")
    Log.event(settings, clock, "info", "cooldown", {
      scope,
      [scope === "account" ? "account" : "key"]: rest.join(":"),
      until: iso(until),
      ms: until - now
    })
    return
  }
  const b = before as HealthRecord | undefined
  const a = after as HealthRecord | undefined
  if (a?.until !== undefined && a.until > now && a.until !== b?.until) {
    Log.event(settings, clock, "warn", "key_ejected", {
      key: id,
      reason: a.reason ?? null,
      ejections: a.ejections ?? 0,
      until: iso(a.until),
      ms: a.until - now
    })
  } else if (a?.testing === true && b?.testing !== true) {
    const probe = engine.config.strategy.some((s) => s.name === "health-aware" && s.recovery === "probe")
    Log.event(settings, clock, "info", probe ? "key_probe" : "key_trial", { key: id })
  } else if (b?.until !== undefined && a?.until === undefined) {
    Log.event(settings, clock, "info", "key_recovered", { key: id })
  }
}

/** `store` with its writes to the health and cooldown namespaces reported as events. */
export const observe = (
  store: StateStore.Service,
  state: () => ServerState | undefined
): StateStore.Service => {
  const watched = (ns: string) => ns === HEALTH || ns === COOLDOWN
  const u = store.unsafe
  const unsafe: StateStore.Unsafe | undefined =
    u === undefined
      ? undefined
      : {
          ...u,
          set: (ns, id, value) => {
            if (!watched(ns)) return u.set(ns, id, value)
            const before = u.get(ns, id)
            u.set(ns, id, value)
            changed(state(), ns, id, before, value)
          },
          modify: (ns, id, f) => {
            if (!watched(ns)) return u.modify(ns, id, f)
            let before: unknown
            let after: unknown
            const b = u.modify(ns, id, (cur) => {
              const r = f(cur as never)
              before = cur
              after = r[1]
              return r
            })
            changed(state(), ns, id, before, after)
            return b
          }
        }
  if (unsafe !== undefined) {
    return {
      ...store,
      set: (ns, id, value) => Effect.sync(() => unsafe.set(ns, id, value)),
      modify: (ns, id, f) => Effect.sync(() => unsafe.modify(ns, id, f)),
      unsafe
    }
  }
  // A store without synchronous access: read, write, compare (not atomic with other replicas'
  // writes, but only for the event line).
  return {
    ...store,
    set: (ns, id, value) =>
      watched(ns)
        ? Effect.flatMap(store.get(ns, id), (before) =>
            Effect.map(store.set(ns, id, value), () => changed(state(), ns, id, before, value))
          )
        : store.set(ns, id, value),
    modify: (ns, id, f) => {
      if (!watched(ns)) return store.modify(ns, id, f)
      let before: unknown
      let after: unknown
      return Effect.tap(
        store.modify(ns, id, (cur) => {
          const r = f(cur as never)
          before = cur
          after = r[1]
          return r
        }),
        () => changed(state(), ns, id, before, after)
      )
    }
  }
}
