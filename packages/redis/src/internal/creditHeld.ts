// One key's credit slice as a replica of the fleet holds it (`FleetCredit`'s bookkeeping).

export interface Held {
  granted: number
  expiresAt: number
  source: "redis" | "held" | "local" | "none"
  reserved: number
  unsent: number
  /** Credit no replica held at the last grant (nano-dollars): a share of it is used while cut off. */
  spare: number
  /** Redis answered but had no ledger (restarted empty): cut off until a lookup rebuilds it. */
  orphan: boolean
  /** While a renewal is in flight: reservations + spend may not pass this. */
  frozen: number | undefined
  demand: number
  busyAt: number
  unit: number
  /** The key's credit as last looked up (nano-dollars); null: unlimited. */
  available: number | null
  /** The fleet's credit was (nearly) all granted at the last grant: renew on every tick. */
  tight: boolean
  /** When the last keep-alive renewal was sent. */
  renewedAt: number
  /** A selection waits for more (`grow`): renew in the next round. */
  asked: boolean
  /** Micro-dollars of this replica's spend Redis acknowledged (sent with each settle). */
  acked: number
}

/** A key just looked up: nothing granted yet, renewed on every tick until a grant says otherwise. */
export const freshHeld = (available: number | null): Held => ({
  granted: 0,
  expiresAt: 0,
  source: "none",
  reserved: 0,
  unsent: 0,
  frozen: undefined,
  demand: 0,
  busyAt: 0,
  spare: 0,
  orphan: false,
  unit: 1,
  available,
  tight: true,
  renewedAt: -Infinity,
  asked: false,
  acked: 0
})
