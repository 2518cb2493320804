/**
 * Where an example's requests go: the embedded simulator on 127.0.0.1 (the default), or the real
 * OpenRouter API when `--real` is passed and `OPENROUTER_API_KEYS` is set.
 *
 * Every example builds its balancer from a `Target`, so the same program runs in both places.
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Key from "@or-balancer/core/Key"
import * as KeyPool from "@or-balancer/core/KeyPool"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  readonly mode: "simulator" | "real"
  /** The API base URL, e.g. `http://127.0.0.1:40123/api/v1`. */
  readonly baseUrl: string
  /** The keys to balance over; a simulated key's id is its label. */
  readonly keys: ReadonlyArray<Key.Key>
  /** The running simulator, when there is one: examples read its stats to show what happened. */
  readonly simulator: Simulator.Handle | undefined
}

/**
 * @since 0.1.0
 * @category Context
 */
export class Target extends Context.Tag("@or-balancer/examples/Target")<Target, Service>() {}

/**
 * The keys of a running simulator, labelled and grouped by account as the simulator has them.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const keysOf = (
  sim: Simulator.Handle,
  extra?: (label: string) => Partial<Omit<Key.Key, "id" | "secret">>
): ReadonlyArray<Key.Key> =>
  sim.keys.map((k) =>
    Key.make({ id: k.label, secret: k.secret, account: k.account, ...(extra?.(k.label) ?? {}) })
  )

/**
 * Starts the simulator with `config` for the life of the layer.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerSimulator = (
  config: Simulator.Config,
  extra?: (label: string) => Partial<Omit<Key.Key, "id" | "secret">>
): Layer.Layer<Target, Simulator.SimulatorError> =>
  Layer.scoped(
    Target,
    Effect.map(Simulator.make(config), (sim) => ({
      mode: "simulator" as const,
      baseUrl: sim.baseUrl,
      keys: keysOf(sim, extra),
      simulator: sim
    }))
  )

/**
 * The real API: keys from `OPENROUTER_API_KEYS` (comma separated, `label=secret` or `secret`),
 * base URL from `OPENROUTER_BASE_URL` (default OpenRouter's). No simulator is started. `extra`
 * gives a key its per-key settings (weight, concurrency, models) by label, as in the simulator.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerRealWith = (
  extra?: (label: string) => Partial<Omit<Key.Key, "id" | "secret">>
): Layer.Layer<Target, Key.KeyConfigError | import("effect/ConfigError").ConfigError> =>
  Layer.effect(
    Target,
    Effect.gen(function* () {
      const text = yield* Config.redacted("OPENROUTER_API_KEYS")
      const parsed = yield* KeyPool.parseKeyList(text)
      const keys = extra === undefined ? parsed : parsed.map((k) => Key.make({ ...k, ...extra(k.id) }))
      const baseUrl = yield* Config.string("OPENROUTER_BASE_URL").pipe(
        Config.withDefault(OpenRouterClient.DEFAULT_BASE_URL)
      )
      return { mode: "real" as const, baseUrl, keys, simulator: undefined }
    })
  )

/**
 * {@link layerRealWith} without per-key settings.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerReal: Layer.Layer<Target, Key.KeyConfigError | import("effect/ConfigError").ConfigError> =
  layerRealWith()

/**
 * The key pool of the target.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerPool: Layer.Layer<KeyPool.KeyPool, Key.KeyConfigError, Target> = Layer.unwrapEffect(
  Effect.map(Target, (t) => KeyPool.layer(t.keys))
)

/**
 * An `HttpClient` on Node's http agent, and the OpenRouter client's settings pointed at the target.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerClientConfig: Layer.Layer<OpenRouterClient.ClientConfig, never, Target> =
  Layer.unwrapEffect(
    Effect.map(Target, (t) =>
      OpenRouterClient.layerClientConfig({
        baseUrl: t.baseUrl,
        title: "or-balancer examples",
        timeout: t.mode === "simulator" ? "5 seconds" : "120 seconds"
      })
    )
  )

/**
 * @since 0.1.0
 * @category Layers
 */
export const layerHttp = NodeHttpClient.layerUndici
