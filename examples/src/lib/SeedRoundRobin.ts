/**
 * A faithful plain-TypeScript port of the seed's `RoundRobinClient` and its error table: the
 * baseline the benchmarks compare against. No Effect, no health, no credit awareness.
 *
 * The seed (Python): `itertools.cycle(range(len(clients)))`, `get_client()` takes the next index,
 * `chat()` calls `client.chat.completions.create(...)` once with that key. Its error table says:
 * 401 "check API key" (no retry), 429 "implement exponential backoff", 500 "retry with backoff",
 * model not found "verify model ID" (no retry). The retries stay on the key that was chosen, as
 * the OpenAI client the seed uses retries on its own key (`max_retries=2` by default). The only
 * deviation: a per-attempt timeout (the seed's client waits up to 10 minutes), so a stalled
 * connection cannot hold a benchmark hostage.
 *
 * @since 0.1.0
 */

/**
 * `itertools.cycle(range(n))`.
 *
 * @since 0.1.0
 * @category Models
 */
export class Cycle<A> {
  private i = 0
  constructor(private readonly items: ReadonlyArray<A>) {}
  next(): A {
    const item = this.items[this.i]!
    this.i = (this.i + 1) % this.items.length
    return item
  }
}

/**
 * What the seed's error table says to do with a status.
 *
 * @since 0.1.0
 * @category Models
 */
export type SeedAction = "fail" | "retry-with-backoff"

/**
 * The seed's "Error Handling" section as a function: 429 and 5xx are retried with exponential
 * backoff; 401, model not found and everything else fail.
 *
 * @since 0.1.0
 * @category Models
 */
export const seedErrorTable = (status: number): SeedAction =>
  status === 429 || status >= 500 ? "retry-with-backoff" : "fail"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  readonly baseUrl: string
  /** Retries after the first attempt (the seed's OpenAI client default). Default 2. */
  readonly maxRetries?: number
  /** First backoff (the OpenAI client's 0.5 s), doubling. Default 500 ms. */
  readonly backoffMs?: number
  /** Per attempt. Default 5 s. */
  readonly timeoutMs?: number
}

/**
 * @since 0.1.0
 * @category Models
 */
export type ChatResult =
  | { readonly ok: true; readonly status: number; readonly body: unknown; readonly attempts: number }
  | {
      readonly ok: false
      readonly status: number | undefined
      readonly error: string
      readonly attempts: number
    }

interface Client {
  readonly apiKey: string
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * @since 0.1.0
 * @category Constructors
 */
export class RoundRobinClient {
  private readonly clients: ReadonlyArray<Client>
  private readonly cycle: Cycle<number>
  private readonly url: string
  private readonly maxRetries: number
  private readonly backoffMs: number
  private readonly timeoutMs: number

  constructor(apiKeys: ReadonlyArray<string>, options: Options) {
    this.clients = apiKeys.map((apiKey) => ({ apiKey }))
    this.cycle = new Cycle(apiKeys.map((_, i) => i))
    this.url = `${options.baseUrl.replace(/\/+$/, "")}/chat/completions`
    this.maxRetries = options.maxRetries ?? 2
    this.backoffMs = options.backoffMs ?? 500
    this.timeoutMs = options.timeoutMs ?? 5_000
  }

  /** The seed's `get_client()`: the next client in the cycle, whatever its state. */
  getClient(): Client {
    return this.clients[this.cycle.next()]!
  }

  /** The seed's `chat(**kwargs)`: one key per request; retries per the error table on that key. */
  async chat(body: Record<string, unknown>): Promise<ChatResult> {
    const client = this.getClient()
    for (let attempt = 1; ; attempt++) {
      let status: number | undefined
      let error: string
      try {
        const response = await fetch(this.url, {
          method: "POST",
          headers: { authorization: `Bearer ${client.apiKey}`, "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(this.timeoutMs)
        })
        status = response.status
        const text = await response.text()
        if (status < 400) return { ok: true, status, body: JSON.parse(text) as unknown, attempts: attempt }
        error = `HTTP ${status}`
      } catch (e) {
        // Timeouts and resets are not in the seed's table: the seed raises them to the caller.
        return {
          ok: false,
          status,
          error: e instanceof Error ? e.name : "Error",
          attempts: attempt
        }
      }
      if (seedErrorTable(status) === "fail" || attempt > this.maxRetries) {
        return { ok: false, status, error, attempts: attempt }
      }
      await sleep(this.backoffMs * 2 ** (attempt - 1))
    }
  }
}
