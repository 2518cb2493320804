/**
 * Named clients' budgets and rates over a fleet of replicas sharing Redis (`@or-balancer/redis`'s
 * `ClientBudgets`): a request's reservation is one Lua script run in Redis before it is forwarded
 * (one round trip, ~0.1 ms on loopback), its settlement another after the answer, off the
 * request's path. So concurrent requests on any number of replicas never overshoot a budget, and
 * a client's rpm holds over the fleet.
 *
 * Redis unreachable (down, slow, breaker open: then no call is sent): each replica admits on a
 * local share, what the budget had left at the last answer from Redis ÷ the fleet's replicas, and
 * rpm ÷ replicas; never the whole budget. What it spends meanwhile is kept and added to the fleet's
 * spend with its next reservation once Redis answers again.
 */
import * as ClientBudgets from "@or-balancer/redis/ClientBudgets"
import * as RedisStore from "@or-balancer/redis/RedisStore"
import * as RedisUnavailable from "@or-balancer/redis/RedisUnavailable"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as crypto from "node:crypto"
import type * as GatewayConfig from "../GatewayConfig.js"
import * as Clients from "./clients.js"

/** This replica's link to the fleet (from the engine's `redis` section). */
export interface Link {
  readonly store: RedisStore.Service
  readonly replicaId: string
  readonly replicas: number
}

/** What a replica keeps per client beside Redis: shared by the engines of one gateway. */
export interface State {
  /** The fleet's counters (USD) in a period, as Redis last said them. */
  readonly known: Map<string, Known>
  /** Spend (nano-dollars) settled while Redis was unreachable, not yet counted there. */
  readonly unsynced: Map<string, number>
  /** The local shares' ledger, used only while Redis is unreachable. */
  readonly local: Clients.Ledger
  degraded: boolean
}

interface Known {
  readonly periodStart: number
  readonly spent: number
  /** Spent and reserved: what the local shares are cut from. */
  readonly committed: number
}

export const makeState = (): State => ({
  known: new Map(),
  unsynced: new Map(),
  local: Clients.makeLedger(),
  degraded: false
})

const NANO = 1e9
// Unique across replicas and restarts: a restarted replica's ids never meet its predecessor's.
const PREFIX = crypto.randomBytes(4).toString("hex")
let sequence = 0

const provide = <A, E>(link: Link, e: Effect.Effect<A, E, RedisStore.RedisStore>) =>
  Effect.provideService(e, RedisStore.RedisStore, link.store)

/** The client limited to this replica's share, for the local ledger. */
const localShare = (
  state: State,
  link: Link,
  client: GatewayConfig.ClientConfig,
  now: number
): GatewayConfig.ClientConfig => {
  const n = Math.max(1, link.replicas)
  const b = client.budget
  let budget = b
  if (b !== undefined) {
    const k = state.known.get(client.id)
    const spent =
      k !== undefined && k.periodStart === CreditLookup.periodStart(b.period, now) ? k.committed : 0
    // Priced at the amount the caller reserves (see `admit`'s call below).
    budget = { ...b, usd: Math.max(0, b.usd - spent) / n, priced: true, usdPerToken: undefined }
  }
  return {
    ...client,
    budget,
    rpm: client.rpm === undefined ? undefined : Math.max(1, Math.floor(client.rpm / n))
  }
}

const addUnsynced = (state: State, id: string, nano: number) => {
  if (nano > 0) state.unsynced.set(id, (state.unsynced.get(id) ?? 0) + nano)
}

/** The unsynced spend, taken out while a call carries it (put back by `addUnsynced` if it fails). */
const takeUnsynced = (state: State, id: string): number => {
  const n = state.unsynced.get(id) ?? 0
  state.unsynced.delete(id)
  return n
}

/** What this replica last saw spent in the client's period, for Redis to restore after a restart. */
const seenOf = (state: State, id: string): ClientBudgets.Seen | undefined => {
  const k = state.known.get(id)
  return k === undefined ? undefined : { spent: k.spent * NANO, periodStart: k.periodStart }
}

/**
 * Admits one request of `client` (its models already checked by the caller's account) against the
 * fleet's budget and rate; `done` gets the charge or the refusal. `amount` is the reservation (USD).
 */
export const admit = (
  link: Link,
  state: State,
  ledger: Clients.Ledger,
  client: GatewayConfig.ClientConfig,
  amount: number,
  ttlMs: number,
  now: () => number,
  done: (r: Clients.Charge | Clients.Refusal) => void
): void => {
  const a = Clients.account(ledger, client, now())
  const b = client.budget
  const period = b?.period ?? "daily"
  const id = `${link.replicaId}:${PREFIX}:${(++sequence).toString(36)}`
  const catchUp = takeUnsynced(state, client.id)
  const sentAt = now()
  // Outside any fiber (RedisStore.unsafeRun): a fiber per call cost more than the round trip.
  ClientBudgets.unsafeReserve(
    link.store,
    {
      clientId: client.id,
      reservationId: id,
      amount: b === undefined ? 0 : amount * NANO,
      budget: b === undefined ? undefined : b.usd * NANO,
      period,
      rpm: client.rpm,
      ttlMs,
      catchUp,
      seen: seenOf(state, client.id)
    },
    (v) => {
      if (v instanceof RedisUnavailable.RedisUnavailable) {
        // Redis unreachable: this replica's share, on the local ledger.
        state.degraded = true
        addUnsynced(state, client.id, catchUp)
        const r = Clients.admit(
          state.local,
          localShare(state, link, client, now()),
          [],
          undefined,
          now(),
          amount
        )
        if (Clients.isRefusal(r)) {
          if (r.code === "client_budget_exceeded") a.refused.budget++
          else a.refused.rate++
          return done(r.code === "client_budget_exceeded" ? Clients.overBudget(client, r.resetAt!) : r)
        }
        a.requests++
        let settled = false
        return done({
          settle: (cost, succeeded) => {
            if (settled) return
            settled = true
            const spent = succeeded ? (cost ?? amount) : 0
            r.settle(cost, succeeded)
            a.spentTotal += spent
            addUnsynced(state, client.id, spent * NANO)
          }
        })
      }
      state.degraded = false
      record(state, a, client, v.spent, v.reserved, sentAt)
      if (v.verdict === "budget") {
        a.refused.budget++
        // Periods end on a whole second: rounding takes the round trip out of the reset.
        return done(Clients.overBudget(client, Math.round((sentAt + v.retryInMs) / 1000) * 1000))
      }
      if (v.verdict === "rate") {
        a.refused.rate++
        return done(Clients.overRate(client, sentAt + v.retryInMs))
      }
      a.requests++
      let settled = false
      done({
        settle: (cost, succeeded) => {
          if (settled) return
          settled = true
          const spent = succeeded ? (cost ?? amount) : 0
          a.spentTotal += spent
          if (b === undefined) return
          const at = now()
          ClientBudgets.unsafeSettle(link.store, client.id, id, spent * NANO, period, (x) => {
            if (x instanceof RedisUnavailable.RedisUnavailable)
              // The reservation lapses by itself; the spend goes with the next reservation.
              addUnsynced(state, client.id, spent * NANO)
            else record(state, a, client, x.spent, x.reserved, at)
          })
        }
      })
    }
  )
}

/** The fleet's counters as Redis answered them: the `/status` row shows them. */
const record = (
  state: State,
  a: Clients.Account,
  client: GatewayConfig.ClientConfig,
  spent: number,
  reserved: number,
  at: number
) => {
  if (client.budget === undefined) return
  const periodStart = CreditLookup.periodStart(client.budget.period, at)
  state.known.set(client.id, { periodStart, spent: spent / NANO, committed: (spent + reserved) / NANO })
  a.periodStart = periodStart
  a.spent = spent / NANO
  a.reserved = reserved / NANO
}

/**
 * Brings this replica and the fleet together for each budgeted client: hands Redis the spend made
 * while it was away (and what was spent before it restarted empty), and takes the fleet's counters
 * for the `/status` rows and the local shares. Redis unreachable: nothing changes.
 */
export const sync = (
  link: Link,
  state: State,
  ledger: Clients.Ledger,
  clients: ReadonlyArray<GatewayConfig.ClientConfig>,
  now: number
): Effect.Effect<void> =>
  Effect.forEach(
    clients.filter((c) => c.budget !== undefined),
    (c) =>
      Effect.suspend(() => {
        const catchUp = takeUnsynced(state, c.id)
        return provide(
          link,
          ClientBudgets.sync(c.id, c.budget!.period, { catchUp, seen: seenOf(state, c.id) })
        ).pipe(
          Effect.match({
            onFailure: () => addUnsynced(state, c.id, catchUp),
            onSuccess: (v) => record(state, Clients.account(ledger, c, now), c, v.spent, v.reserved, now)
          })
        )
      }),
    { concurrency: "unbounded", discard: true }
  )

/** Syncs every `everyMs` while the scope is open, so the local shares are cut from fresh figures. */
export const keepSynced = (
  engine: () => {
    readonly link: Link | undefined
    readonly clients: ReadonlyArray<GatewayConfig.ClientConfig>
    readonly now: number
  },
  state: State,
  ledger: Clients.Ledger,
  everyMs = 1_000
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.suspend(() => {
    const e = engine()
    return e.link === undefined ? Effect.void : sync(e.link, state, ledger, e.clients, e.now)
  }).pipe(Effect.repeat(Schedule.spaced(everyMs)), Effect.forkScoped, Effect.asVoid)
