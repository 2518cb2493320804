/**
 * Simulator configurations shared by the examples.
 *
 * @since 0.1.0
 */
import * as Simulator from "@or-balancer/simulator/Simulator"

/**
 * `n` healthy keys with generous caps on one account (`acme`), fixed latency.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const healthy = (
  n: number,
  options: { readonly seed?: number; readonly latencyMs?: number; readonly limit?: number | null } = {}
): Simulator.Config => {
  const seed = options.seed ?? 7
  return {
    seed,
    keys: Array.from({ length: n }, (_, i) => ({
      label: `key-${i + 1}`,
      account: "acme",
      secret: Simulator.simulatedSecret(seed, i),
      limit: options.limit === undefined ? 10 : options.limit
    })),
    latency: { kind: "fixed", ms: options.latencyMs ?? 2 },
    stream: { keepAlives: 1, chunks: 4, chunkIntervalMs: 1 }
  }
}

/**
 * A chat request with one user message.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const ask = (content: string, model = "openai/gpt-4o-mini", maxTokens = 16) => ({
  model,
  messages: [{ role: "user", content }],
  max_tokens: maxTokens
})
