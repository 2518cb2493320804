// The strategy stack's shape, checked against the keys (see `GatewayConfig.ts`): decorators
// outermost, one base strategy last, and every key a by-model route names configured.
import type * as Key from "@or-balancer/core/Key"
import * as Effect from "effect/Effect"
import { decorators, type StrategyEntry } from "./configFile.js"
import { fail, type GatewayConfigError } from "./configError.js"

export const checkStack = (
  strategy: ReadonlyArray<StrategyEntry>,
  keys: ReadonlyArray<Key.Key>
): Effect.Effect<void, GatewayConfigError> =>
  Effect.gen(function* () {
    if (strategy.length === 0) return yield* fail("strategy", "needs at least one strategy")
    for (let i = 0; i < strategy.length; i++) {
      const last = i === strategy.length - 1
      const isDecorator = decorators.has(strategy[i]!.name)
      if (last && isDecorator) {
        return yield* fail(
          `strategy[${i}].name`,
          `"${strategy[i]!.name}" wraps another strategy: end the stack with a base strategy`
        )
      }
      if (!last && !isDecorator) {
        return yield* fail(
          `strategy[${i}].name`,
          `"${strategy[i]!.name}" is a base strategy: only the last entry may be one`
        )
      }
      const entry = strategy[i]!
      if (entry.name === "by-model") {
        const ids = new Set(keys.map((k) => k.id))
        for (let r = 0; r < entry.routes.length; r++) {
          const routeKeys = entry.routes[r]!.keys ?? []
          for (let k = 0; k < routeKeys.length; k++) {
            if (!ids.has(routeKeys[k]!)) {
              return yield* fail(
                `strategy[${i}].routes[${r}].keys[${k}]`,
                `"${routeKeys[k]}" is not the id of a configured key`
              )
            }
          }
        }
      }
    }
  })
