// The gateway bench's fixed inputs (see `../gateway.ts`): the request body, tokens, the keys' labels,
// the strategy stack under test, and the switches its children read from the environment.
export const BODY = JSON.stringify({
  model: "openai/gpt-4o-mini",
  messages: [{ role: "user", content: "Say hello in one word." }],
  max_tokens: 8
})

export const TOKEN = "bench-gateway-token"
export const CLIENT_TOKEN = "bench-client-token-b"
export const CLIENTS = process.env.OR_GATEWAY_BENCH_CLIENTS === "1"

/**
 * The gateway's stack: the full one a production config runs (health › concurrency › credit threshold ›
 * weighted), every layer on the fast path. OR_GATEWAY_BENCH_STRATEGY (the config's JSON list) measures another.
 */
export const STRATEGY: unknown = JSON.parse(
  process.env.OR_GATEWAY_BENCH_STRATEGY ??
    JSON.stringify([
      { name: "health-aware" },
      { name: "concurrency-limited", defaultMax: 64 },
      { name: "threshold", threshold: 0.01 },
      { name: "weighted" }
    ])
)
export const LABELS = ["bench-1", "bench-2", "bench-3"]

/** The gateway child's log level when it logs every request (OR_GATEWAY_BENCH_LOG), else off. */
export const LOG = process.env.OR_GATEWAY_BENCH_LOG as "debug" | "info" | "warn" | "error" | undefined
