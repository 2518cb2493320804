// The values the gateway's config takes for what its file leaves out (see `GatewayConfig.ts`).
import type { HedgeConfig } from "../GatewayConfig.js"
import type { StrategyEntry } from "./configFile.js"

export const defaultHedge: HedgeConfig = { afterMs: undefined, minMs: 200, ratio: 0.1, burst: 10 }

export const DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"

export const DEFAULT_STRATEGY: ReadonlyArray<StrategyEntry> = [
  { name: "account-pacing" },
  { name: "health-aware", failureThreshold: 3 },
  { name: "round-robin" }
]

export const DEFAULT_STRATEGY_NAMES = DEFAULT_STRATEGY.map((s) => s.name).join(" > ")
