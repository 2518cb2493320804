/**
 * By model (a decorator): an ordered list of routes from model patterns (`anthropic/*`, an exact
 * model id, `*`) to a key subset and, optionally, a sub-strategy of their own; the first route
 * whose pattern matches the request's model wins. A route without a strategy uses the inner
 * selector. A key's own `models` list (`Key.servesModel`) is honoured in every route. A model
 * that matches no route fails with `NoKeyAvailable` reason `model`, naming the model and the
 * known patterns. A request without a model takes the `*` route if there is one, else the inner
 * selector.
 *
 * Sub-strategies are built once, sharing this layer's environment (pool, store). Give stateful
 * ones distinct `name`s (e.g. `RoundRobin.layer({ name: "anthropic" })`) so their state is apart.
 *
 * The decision takes the route and asks that selector's `decide`: a route whose strategy is
 * written as an Effect waits, and the other routes keep the synchronous path.
 *
 * @since 0.1.0
 */
import * as Key from "@or-balancer/core/Key"
import type * as KeyPool from "@or-balancer/core/KeyPool"
import * as KeySelector from "@or-balancer/core/KeySelector"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * One route. `E` and `R` are what its strategy's layer may fail with and requires; {@link layer}
 * reads them from each route it is given, so its own type lists exactly what the routes need.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Route<E = any, R = any> {
  /** `*`, `vendor/*` (prefix) or an exact model id. */
  readonly pattern: string
  /** Ids of the keys this route may use; default all. */
  readonly keys?: ReadonlyArray<string> | undefined
  /** This route's own strategy; default the inner selector. */
  readonly strategy?: Layer.Layer<KeySelector.KeySelector, E, R> | undefined
}

type Strategies<Routes extends ReadonlyArray<Route>> = Exclude<Routes[number]["strategy"], undefined>

const MODEL: KeySelector.Ineligible = { reason: "model" }

interface Compiled {
  readonly pattern: string
  readonly subset: ReadonlySet<string> | undefined
  readonly selector: KeySelector.Service
}

/**
 * Requires the inner `KeySelector` (the default for routes without a strategy) and whatever the
 * routes' strategies require.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = <const Routes extends ReadonlyArray<Route>>(
  routes: Routes
): Layer.Layer<
  KeySelector.KeySelector,
  Layer.Layer.Error<Strategies<Routes>>,
  Layer.Layer.Context<Strategies<Routes>> | KeySelector.KeySelector | KeyPool.KeyPool
> =>
  Layer.scoped(
    KeySelector.KeySelector,
    Effect.gen(function* () {
      const inner = yield* KeySelector.KeySelector
      const compiled: ReadonlyArray<Compiled> = yield* Effect.forEach(routes, (route) =>
        Effect.map(
          route.strategy === undefined
            ? Effect.succeed(inner)
            : Effect.map(Layer.build(route.strategy), (ctx) => Context.get(ctx, KeySelector.KeySelector)),
          (selector) => ({
            pattern: route.pattern,
            subset: route.keys === undefined ? undefined : new Set(route.keys),
            selector
          })
        )
      )
      const known = routes.map((r) => r.pattern).join(", ")
      const wildcard = compiled.find((r) => r.pattern === "*")

      // The route a model takes, the refusal of a model
      // no route takes, and the route's gate on the request.
      const routeOf = (model: string | undefined) =>
        model === undefined ? wildcard : compiled.find((r) => Key.matchesModel(r.pattern, model))
      const noRoute = (model: string) =>
        new KeySelector.NoKeyAvailable({
          reason: "model",
          message: `no route for model "${model}"; known patterns: ${known}`
        })
      const narrow = (route: Compiled, request: KeySelector.SelectRequest) => {
        const subset = route.subset
        const model = request.model
        return KeySelector.withGate(request, (k) =>
          (subset !== undefined && !subset.has(k.id)) || !Key.servesModel(k, model) ? MODEL : undefined
        )
      }

      return KeySelector.fromDecide((request) => {
        const model = request.model
        const route = routeOf(model)
        if (route === undefined) return model === undefined ? inner.decide(request) : noRoute(model)
        return route.selector.decide(narrow(route, request))
      })
    })
  )
