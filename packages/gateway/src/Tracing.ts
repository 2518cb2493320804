/**
 * OpenTelemetry tracing for the gateway, configured by the standard environment variables and off
 * by default. With a tracer installed (this layer, or any `@effect/opentelemetry` layer a program
 * provides around `Gateway.make`), the gateway makes a span per request (continuing an incoming
 * `traceparent`) and one per upstream attempt, and sends each attempt's context upstream as its
 * `traceparent`. Without one it makes no span, and passes an incoming `traceparent` on unchanged.
 *
 * @since 0.2.0
 */
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"

/**
 * Whether the environment asks for OTLP traces: `OTEL_EXPORTER_OTLP_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, or `OTEL_TRACES_EXPORTER` is `otlp`; and
 * `OTEL_SDK_DISABLED` is not `true`.
 *
 * @since 0.2.0
 * @category Constructors
 */
export const enabledByEnv: Effect.Effect<boolean> = Effect.gen(function* () {
  const read = (name: string) => Effect.orElseSucceed(Config.option(Config.string(name)), () => Option.none())
  const disabled = yield* read("OTEL_SDK_DISABLED")
  if (Option.getOrUndefined(disabled)?.toLowerCase() === "true") return false
  const exporter = Option.getOrUndefined(yield* read("OTEL_TRACES_EXPORTER"))
  if (exporter !== undefined) return exporter.split(",").some((e) => e.trim() === "otlp")
  return (
    Option.isSome(yield* read("OTEL_EXPORTER_OTLP_ENDPOINT")) ||
    Option.isSome(yield* read("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
  )
})

/**
 * A tracer exporting over OTLP/HTTP when {@link enabledByEnv}, else nothing. The exporter reads
 * the rest of the standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`, …); the
 * service name is `OTEL_SERVICE_NAME`, default `or-balancer`. Spans are batched and flushed when
 * the layer's scope closes. The OpenTelemetry packages are loaded only when tracing is on.
 *
 * @since 0.2.0
 * @category Layers
 */
export const layerFromEnv: Layer.Layer<never> = Layer.unwrapEffect(
  Effect.gen(function* () {
    if (!(yield* enabledByEnv)) return Layer.empty
    const serviceName = yield* Effect.orElseSucceed(Config.string("OTEL_SERVICE_NAME"), () => "or-balancer")
    const [NodeSdk, Base, Otlp] = yield* Effect.promise(() =>
      Promise.all([
        import("@effect/opentelemetry/NodeSdk"),
        import("@opentelemetry/sdk-trace-base"),
        import("@opentelemetry/exporter-trace-otlp-http")
      ])
    )
    return NodeSdk.layer(() => ({
      resource: { serviceName },
      spanProcessor: new Base.BatchSpanProcessor(new Otlp.OTLPTraceExporter())
    }))
  })
)
