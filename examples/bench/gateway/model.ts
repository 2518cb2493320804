// The gateway bench's results (see `../gateway.ts`): per target, per layout, and the whole run.
export interface TargetResult {
  readonly name:
    "simulator" | "raw-proxy" | "gateway" | "gateway-clients" | "gateway-clients-redis" | "gateway-b"
  readonly requests: number
  readonly errors: number
  readonly seconds: number
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** This target's percentile minus the simulator's (0 for the simulator itself). */
  readonly addedP50Ms: number
  readonly addedP99Ms: number
  /** CPU (user + system) the target's own process spent per request, in µs. */
  readonly cpuUsPerRequest: number
  /** CPU the simulator's process spent per request while this target was measured, in µs. */
  readonly upstreamCpuUsPerRequest: number
  /** Per round: this target's p50 minus the simulator's p50 in the same round (the spread between rounds). */
  readonly roundAddedP50Ms: ReadonlyArray<number>
  /** New TCP connections the target's process opened over the measured rounds (after the warm-up): steady load should reuse its keep-alive pool. */
  readonly newUpstreamSockets?: number
}

export type Layout = "shared" | "pinned" | "cpu-bound"

/** One layout's figures, from its own interleaved rounds. */
export interface LayoutResult {
  readonly layout: Layout
  /** The upstream's answer latency in this layout, ms (0 in the CPU-bound layout). */
  readonly upstreamLatencyMs?: number
  /** Which process ran on which CPU (absent when nothing was pinned). */
  readonly pinning?: { readonly loadGeneratorAndSimulatorCpu: number; readonly proxyCpu: number }
  readonly rounds: number
  readonly targets: ReadonlyArray<TargetResult>
  /** The gateway's throughput over the raw proxy's (target ≥ 0.7). */
  readonly gatewayVsRawProxy: number
  /** Target < 1 ms. */
  readonly gatewayAddedP50Ms: number
  readonly rawProxyAddedP50Ms: number
  readonly rawProxyCpuUsPerRequest: number
  readonly gatewayCpuUsPerRequest: number
  /** The same gateway with named clients configured (budgets, rpm, models), CPU µs per request. */
  readonly gatewayClientsCpuUsPerRequest: number
  /** With `GATEWAY_REDIS=1`: the same clients with their budgets in Redis, CPU µs per request. */
  readonly gatewayClientsRedisCpuUsPerRequest?: number
  /** The raw proxy's CPU per request over the gateway's: the load-independent throughput ratio. */
  readonly gatewayVsRawProxyCpu: number
  /** Medians over rounds of the per-round ratios (robust to one disturbed round). */
  readonly median: {
    readonly gatewayVsRawProxy: number
    /** The gateway's CPU per request over the raw proxy's (target ≤ 1.2 in the CPU-bound layout). */
    readonly gatewayCpuOverRawProxy: number
    /** With `GATEWAY_B`: (gateway B − gateway) CPU µs per request, and B's CPU over the raw proxy's. */
    readonly bMinusAUs?: number
    readonly bCpuOverRawProxy?: number
  }
}

export interface SkippedLayout {
  readonly layout: Layout
  readonly skipped: string
}

/**
 * The top-level figures are the shared layout's (as before there were layouts); `layouts` holds
 * both layouts in full, the pinned one possibly skipped.
 */
export interface GatewayBenchResult extends Omit<LayoutResult, "layout" | "pinning"> {
  readonly requests: number
  readonly connections: number
  readonly upstreamLatencyMs: number
  /** The gateway's strategy stack (the config's `strategy` list). */
  readonly strategy: unknown
  readonly layouts: ReadonlyArray<LayoutResult | SkippedLayout>
}

export interface GatewayBenchOptions {
  readonly requests?: number
  readonly connections?: number
  readonly upstreamLatencyMs?: number
  /** Interleaved rounds per layout (default 3: each target once in each position). */
  readonly rounds?: number
  /** Interleaved rounds of the CPU-bound layout (default 8, or GATEWAY_ROUNDS). */
  readonly cpuBoundRounds?: number
  /** Requests per target in the CPU-bound layout (default `requests`, or GATEWAY_CPU_REQUESTS). */
  readonly cpuBoundRequests?: number
  /** Only the CPU-bound layout (or GATEWAY_ONLY_CPU=1). */
  readonly onlyCpuBound?: boolean
  /** Also run the CPU-bound layout (shared, upstream answering at once). Default true. */
  readonly cpuBound?: boolean
  /** Run the raw proxy and gateway children with `--cpu-prof`, into `raw-proxy/` and `gateway/` under this directory (the largest file is the main thread's). */
  readonly cpuProfileDir?: string
}

export const isSkipped = (l: LayoutResult | SkippedLayout): l is SkippedLayout => "skipped" in l
