/**
 * The simulator's hot path: a raw `node:http` handler with all state in plain mutable objects.
 * Per request it does one map lookup, one JSON.parse, a few counters and one JSON.stringify per
 * answer chunk, so a benchmark measures the client, not the simulator.
 */
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as http from "node:http"
import type * as net from "node:net"
import * as CreditLookup from "@or-balancer/core/CreditLookup"
import type * as Simulator from "../Simulator.js"
import { deriveSeed, mulberry32, normal } from "./prng.js"

const Z99 = 2.3263478740408408
const EPSILON = 1e-12

const RATE_ORDER = ["500", "502", "503", "408", "429", "stall", "reset", "slow", "midstream"] as const
const PROVIDER = "SimProvider"
const KEEP_ALIVE = ": OPENROUTER PROCESSING\n\n"
const FILLER = "sim ".repeat(512)

interface AccountState {
  readonly name: string
  rpm: number | null
  windowMs: number
  totalCredits: number | undefined
  windowStart: number
  count: number
  requests: number
  rateLimited: number
}

interface KeyState {
  readonly label: string
  readonly secret: string
  readonly account: AccountState
  limit: number | null
  limitReset: "daily" | "weekly" | "monthly" | null
  /** All-time spend. */
  usage: number
  /** Spend in the current `limitReset` period (all-time when there is none): what the cap limits. */
  periodUsage: number
  periodStart: number
  resetPeriodMs: number | undefined
  revoked: boolean
  management: boolean
  readonly isFreeTier: boolean
  readonly expiresAt: string | null
  script: ReadonlyArray<Simulator.FaultKind> | undefined
  loop: boolean
  scriptPos: number
  /** Cumulative thresholds in RATE_ORDER; undefined when the key has no random faults. */
  rates: ReadonlyArray<readonly [Simulator.FaultKind, number]> | undefined
  latency: Simulator.Latency | undefined
  readonly faultRng: () => number
  readonly latencyRng: () => number
  requests: number
  byOutcome: Record<string, number>
  inFlight: number
  maxInFlight: number
  spend: number
  overspend: number
  overspentRequests: number
  keyLookups: number
}

interface Generation {
  readonly id: string
  readonly account: string
  readonly model: string
  readonly cost: number
  readonly promptTokens: number
  readonly completionTokens: number
  readonly streamed: boolean
  readonly createdAt: string
  readonly latencyMs: number
}

interface Price {
  readonly prompt: number
  readonly completion: number
}

/** What the handler needs to answer one chat request once it is admitted. */
interface Admitted {
  readonly key: KeyState
  readonly model: string
  readonly promptTokens: number
  readonly completionTokens: number
  readonly cost: number
  readonly stream: boolean
  readonly arrivedAt: number
}

export interface Core {
  readonly handler: (req: http.IncomingMessage, res: http.ServerResponse) => void
  readonly stats: () => Simulator.Stats
  readonly resetStats: () => void
  readonly simulatedKeys: () => ReadonlyArray<Simulator.SimulatedKey>
  /** False when no key has that label; throws on an invalid update. */
  readonly updateKey: (label: string, update: Simulator.KeyUpdate) => boolean
  /** False when no key has that label. */
  readonly resetCredit: (label: string) => boolean
  readonly setScript: (
    label: string,
    script: ReadonlyArray<Simulator.FaultKind>,
    loop: boolean | undefined
  ) => boolean
  readonly addKey: (key: Simulator.KeyConfig) => Simulator.SimulatedKey
  readonly updateAccount: (name: string, update: Simulator.AccountConfig) => void
}

const checkLatency = (latency: Simulator.Latency | undefined, where: string): void => {
  if (latency?.kind === "uniform" && latency.max < latency.min)
    throw new Error(`${where}: latency max is below min`)
  if (latency?.kind === "lognormal" && latency.p99 < latency.median)
    throw new Error(`${where}: latency p99 is below the median`)
}

const compileRates = (
  rates: Simulator.FaultRates | undefined,
  where: string
): ReadonlyArray<readonly [Simulator.FaultKind, number]> | undefined => {
  if (rates === undefined) return undefined
  const out: Array<readonly [Simulator.FaultKind, number]> = []
  let sum = 0
  for (const kind of RATE_ORDER) {
    const p = rates[kind]
    if (p === undefined || p === 0) continue
    sum += p
    out.push([kind, sum])
  }
  if (sum > 1 + EPSILON) throw new Error(`${where}: fault rates add up to ${sum}, more than 1`)
  return out.length === 0 ? undefined : out
}

const sampleLatency = (latency: Simulator.Latency, next: () => number): number => {
  switch (latency.kind) {
    case "fixed":
      return latency.ms
    case "uniform":
      return latency.min + (latency.max - latency.min) * next()
    case "lognormal": {
      const mu = Math.log(latency.median)
      const sigma = (Math.log(latency.p99) - mu) / Z99
      return Math.exp(mu + sigma * normal(next))
    }
  }
}

const textLength = (content: unknown): number => {
  if (typeof content === "string") return content.length
  if (!Array.isArray(content)) return 0
  let n = 0
  for (const part of content) {
    if (typeof part === "object" && part !== null && typeof (part as { text?: unknown }).text === "string") {
      n += (part as { text: string }).text.length
    }
  }
  return n
}

const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

const bearer = (header: string | undefined): string | undefined => {
  if (header === undefined) return undefined
  return header.length > 7 && header.slice(0, 7).toLowerCase() === "bearer "
    ? header.slice(7).trim()
    : undefined
}

const errorBody = (
  status: number,
  message: string,
  errorType: string | undefined,
  metadata?: object
): string =>
  JSON.stringify({
    error:
      errorType === undefined
        ? { code: status, message }
        : { code: status, message, metadata: { error_type: errorType, ...metadata } }
  })

const sendJson = (
  res: http.ServerResponse,
  status: number,
  body: string,
  extra?: Record<string, string | number>
): void => {
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body)
  }
  if (extra !== undefined) Object.assign(headers, extra)
  res.writeHead(status, headers)
  res.end(body)
}

const sendError = (
  res: http.ServerResponse,
  status: number,
  message: string,
  errorType: string | undefined,
  extra?: Record<string, string | number>,
  metadata?: object
): void => sendJson(res, status, errorBody(status, message, errorType, metadata), extra)

export const makeCore = (config: Simulator.Config): Core => {
  const seed = config.seed ?? 1
  const modelList = config.models ?? defaultModelsFallback
  const models = new Map<string, Price>()
  for (const m of modelList) {
    if (models.has(m.id)) throw new Error(`model "${m.id}" is listed twice`)
    models.set(m.id, { prompt: m.promptPrice / 1e6, completion: m.completionPrice / 1e6 })
  }
  const defaultCompletionTokens = config.defaultCompletionTokens ?? 32
  const globalLatency: Simulator.Latency = config.latency ?? { kind: "fixed", ms: 0 }
  checkLatency(globalLatency, "latency")
  const keepAlives = config.stream?.keepAlives ?? 1
  const chunkCount = config.stream?.chunks ?? 4
  const chunkIntervalMs = config.stream?.chunkIntervalMs ?? 0
  const slowBytes = config.slowBody?.bytesPerWrite ?? 16
  const slowIntervalMs = config.slowBody?.intervalMs ?? 5
  const retryAfter = String(config.retryAfterSeconds ?? 1)
  const generationsKept = config.generationsKept ?? 10_000
  const genPrefix = `gen-sim${(deriveSeed(seed, "gen") & 0xffff).toString(16).padStart(4, "0")}`

  const accounts = new Map<string, AccountState>()
  const keys: Array<KeyState> = []
  const bySecret = new Map<string, KeyState>()
  const byLabel = new Map<string, KeyState>()
  const generations = new Map<string, Generation>()
  let generationCounter = 0

  const global = {
    requests: 0,
    byOutcome: {} as Record<string, number>,
    inFlight: 0,
    maxInFlight: 0,
    unauthenticated: 0,
    spend: 0,
    overspend: 0
  }

  const account = (name: string): AccountState => {
    let a = accounts.get(name)
    if (a === undefined) {
      a = {
        name,
        rpm: null,
        windowMs: 60_000,
        totalCredits: undefined,
        windowStart: 0,
        count: 0,
        requests: 0,
        rateLimited: 0
      }
      accounts.set(name, a)
    }
    return a
  }

  const updateAccount = (name: string, update: Simulator.AccountConfig): void => {
    const a = account(name)
    if (update.rpm !== undefined) a.rpm = update.rpm
    if (update.windowMs !== undefined) a.windowMs = update.windowMs
    if (update.totalCredits !== undefined) a.totalCredits = update.totalCredits
  }

  for (const [name, a] of Object.entries(config.accounts ?? {})) updateAccount(name, a)

  const applyFaults = (k: KeyState, faults: Simulator.Faults | undefined): void => {
    checkLatency(faults?.latency, `key "${k.label}"`)
    k.rates = compileRates(faults?.rates, `key "${k.label}"`)
    k.script = faults?.script
    k.loop = faults?.loop ?? false
    k.scriptPos = 0
    k.latency = faults?.latency
  }

  const addKey = (input: Simulator.KeyConfig): Simulator.SimulatedKey => {
    const index = keys.length
    const secret = typeof input.secret === "string" ? input.secret : Redacted.value(input.secret)
    const label = input.label ?? `key-${index}`
    if (byLabel.has(label)) throw new Error(`two keys are labelled "${label}"`)
    if (bySecret.has(secret))
      throw new Error(`key "${label}" has the same secret as "${bySecret.get(secret)!.label}"`)
    const k: KeyState = {
      label,
      secret,
      account: account(input.account ?? "default"),
      limit: input.limit ?? null,
      limitReset: input.limitReset ?? null,
      usage: input.usage ?? 0,
      periodUsage: input.usage ?? 0,
      periodStart: Date.now(),
      resetPeriodMs: input.resetPeriodMs,
      revoked: input.revoked ?? false,
      management: input.management ?? false,
      isFreeTier: input.isFreeTier ?? false,
      expiresAt: input.expiresAt ?? null,
      script: undefined,
      loop: false,
      scriptPos: 0,
      rates: undefined,
      latency: undefined,
      faultRng: mulberry32(deriveSeed(seed, "faults", label)),
      latencyRng: mulberry32(deriveSeed(seed, "latency", label)),
      requests: 0,
      byOutcome: {},
      inFlight: 0,
      maxInFlight: 0,
      spend: 0,
      overspend: 0,
      overspentRequests: 0,
      keyLookups: 0
    }
    applyFaults(k, input.faults ?? config.faults)
    keys.push(k)
    bySecret.set(secret, k)
    byLabel.set(label, k)
    return simulatedKey(k)
  }

  const simulatedKey = (k: KeyState): Simulator.SimulatedKey => ({
    label: k.label,
    account: k.account.name,
    secret: Redacted.make(k.secret)
  })

  for (const k of config.keys) addKey(k)

  // ---------------------------------------------------------------------------------------------
  // Recording

  // A key's `limitReset` period: the cap applies to the spend within it. Periods follow the UTC
  // calendar, as OpenRouter's do; a test's `resetPeriodMs` counts from the key's start instead.
  const roll = (k: KeyState, now: number): void => {
    if (k.limitReset === null) return
    const length = k.resetPeriodMs
    if (length === undefined) {
      const start = CreditLookup.periodStart(k.limitReset, now)
      if (start <= k.periodStart) return
      k.periodStart = start
      k.periodUsage = 0
      return
    }
    if (now < k.periodStart + length) return
    k.periodStart += Math.floor((now - k.periodStart) / length) * length
    k.periodUsage = 0
  }

  const remaining = (k: KeyState): number | null =>
    k.limit === null ? null : Math.max(0, k.limit - k.periodUsage)

  const record = (k: KeyState | undefined, outcome: string): void => {
    global.byOutcome[outcome] = (global.byOutcome[outcome] ?? 0) + 1
    if (k !== undefined) k.byOutcome[outcome] = (k.byOutcome[outcome] ?? 0) + 1
  }

  const debit = (a: Admitted, id: string): void => {
    const k = a.key
    roll(k, Date.now())
    const before = k.periodUsage
    k.usage += a.cost
    k.periodUsage += a.cost
    k.spend += a.cost
    global.spend += a.cost
    if (k.limit !== null && k.periodUsage > k.limit + EPSILON) {
      const over = k.periodUsage - Math.max(k.limit, before)
      k.overspend += over
      k.overspentRequests++
      global.overspend += over
    }
    generations.set(id, {
      id,
      account: k.account.name,
      model: a.model,
      cost: a.cost,
      promptTokens: a.promptTokens,
      completionTokens: a.completionTokens,
      streamed: a.stream,
      createdAt: new Date(a.arrivedAt).toISOString(),
      latencyMs: Date.now() - a.arrivedAt
    })
    if (generations.size > generationsKept) generations.delete(generations.keys().next().value!)
  }

  // ---------------------------------------------------------------------------------------------
  // Answers

  const usageOf = (a: Admitted) => ({
    prompt_tokens: a.promptTokens,
    completion_tokens: a.completionTokens,
    total_tokens: a.promptTokens + a.completionTokens,
    cost: a.cost,
    is_byok: false,
    prompt_tokens_details: { cached_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0 }
  })

  const contentOf = (a: Admitted): string => FILLER.slice(0, Math.min(a.completionTokens, 512) * 4 - 1)

  /** Writes `parts` in order, `intervalMs` apart (or trickled when `slow`), then calls `done`. */
  const deliver = (
    res: http.ServerResponse,
    headers: Record<string, string | number>,
    parts: ReadonlyArray<string>,
    intervalMs: number,
    slow: boolean,
    done: () => void
  ): void => {
    if (slow) {
      const bytes = Buffer.from(parts.join(""), "utf8")
      res.writeHead(200, { ...headers, "content-length": bytes.length })
      let offset = 0
      const step = (): void => {
        if (res.destroyed) return
        const end = Math.min(offset + slowBytes, bytes.length)
        if (end >= bytes.length) {
          res.end(bytes.subarray(offset))
          done()
          return
        }
        res.write(bytes.subarray(offset, end))
        offset = end
        setTimeout(step, slowIntervalMs)
      }
      step()
      return
    }
    if (intervalMs <= 0 || parts.length === 1) {
      const body = parts.length === 1 ? parts[0]! : parts.join("")
      res.writeHead(200, { ...headers, "content-length": Buffer.byteLength(body) })
      res.end(body)
      done()
      return
    }
    res.writeHead(200, headers)
    let i = 0
    const step = (): void => {
      if (res.destroyed) return
      if (i === parts.length - 1) {
        res.end(parts[i])
        done()
        return
      }
      res.write(parts[i++])
      setTimeout(step, intervalMs)
    }
    step()
  }

  // One SSE chunk event. `error` and `usage` are left out of the JSON when undefined, and the
  // literal's key order is the order on the wire.
  const chunkEvent = (
    id: string,
    created: number,
    model: string,
    choices: ReadonlyArray<unknown>,
    error?: unknown,
    usage?: unknown
  ): string =>
    `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, provider: PROVIDER, error, choices, usage })}\n\n`

  const answer = (res: http.ServerResponse, a: Admitted, slow: boolean, midstream: boolean): void => {
    const id = `${genPrefix}-${++generationCounter}`
    const created = Math.floor(a.arrivedAt / 1000)
    const content = contentOf(a)
    if (!a.stream) {
      const body = JSON.stringify({
        id,
        object: "chat.completion",
        created,
        model: a.model,
        provider: PROVIDER,
        // OpenRouter sends it (null for most providers); @openrouter/sdk's schema requires the field.
        system_fingerprint: null,
        choices: [
          {
            index: 0,
            logprobs: null,
            finish_reason: "stop",
            native_finish_reason: "stop",
            message: { role: "assistant", content, refusal: null }
          }
        ],
        usage: usageOf(a)
      })
      deliver(res, { "content-type": "application/json", "x-generation-id": id }, [body], 0, slow, () =>
        debit(a, id)
      )
      return
    }
    const parts: Array<string> = []
    for (let i = 0; i < keepAlives; i++) parts.push(KEEP_ALIVE)
    const pieceLength = Math.max(1, Math.ceil(content.length / chunkCount))
    const pieces = Math.ceil(content.length / pieceLength)
    const sent = midstream ? Math.ceil(pieces / 2) : pieces
    for (let i = 0; i < sent; i++) {
      parts.push(
        chunkEvent(id, created, a.model, [
          {
            index: 0,
            delta: { role: "assistant", content: content.slice(i * pieceLength, (i + 1) * pieceLength) },
            finish_reason: null,
            native_finish_reason: null,
            logprobs: null
          }
        ])
      )
    }
    if (midstream) {
      parts.push(
        chunkEvent(
          id,
          created,
          a.model,
          [{ index: 0, delta: { content: "" }, finish_reason: "error", native_finish_reason: "error" }],
          {
            code: 502,
            message: "Provider disconnected mid-stream",
            metadata: { error_type: "provider_unavailable", provider_name: PROVIDER }
          }
        )
      )
    } else {
      parts.push(
        chunkEvent(
          id,
          created,
          a.model,
          [
            {
              index: 0,
              delta: { role: "assistant", content: "" },
              finish_reason: "stop",
              native_finish_reason: "stop",
              logprobs: null
            }
          ],
          undefined,
          usageOf(a)
        ),
        "data: [DONE]\n\n"
      )
    }
    deliver(
      res,
      { "content-type": "text/event-stream", "cache-control": "no-cache", "x-generation-id": id },
      parts,
      chunkIntervalMs,
      slow,
      // A stream that failed in-band is not billed here.
      midstream ? noop : () => debit(a, id)
    )
  }

  const nextFault = (k: KeyState): Simulator.FaultKind => {
    const script = k.script
    if (script !== undefined && script.length > 0) {
      if (k.scriptPos < script.length) {
        const kind = script[k.scriptPos++]!
        if (k.loop && k.scriptPos === script.length) k.scriptPos = 0
        return kind
      }
    }
    const rates = k.rates
    if (rates === undefined) return "ok"
    const u = k.faultRng()
    for (let i = 0; i < rates.length; i++) if (u < rates[i]![1]) return rates[i]![0]
    return "ok"
  }

  const perform = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    a: Admitted,
    kind: Simulator.FaultKind
  ) => {
    const k = a.key
    if (res.destroyed) {
      record(k, "aborted")
      return
    }
    switch (kind) {
      case "ok":
        record(k, "200")
        return answer(res, a, false, false)
      case "slow":
        record(k, "200")
        return answer(res, a, true, false)
      case "midstream":
        if (a.stream) {
          record(k, "midstream")
          return answer(res, a, false, true)
        }
        record(k, "502")
        return sendError(res, 502, "Provider returned error", "provider_unavailable", undefined, {
          provider_name: PROVIDER
        })
      case "500":
        record(k, "500")
        return sendError(res, 500, "Internal Server Error", "server")
      case "502":
        record(k, "502")
        return sendError(res, 502, "Provider returned error", "provider_unavailable", undefined, {
          provider_name: PROVIDER
        })
      case "503":
        record(k, "503")
        return sendError(
          res,
          503,
          "No provider is available for this request right now",
          "provider_overloaded",
          {
            "retry-after": retryAfter
          }
        )
      case "408":
        record(k, "408")
        return sendError(res, 408, "Upstream request timed out", "timeout")
      case "429":
        record(k, "429")
        return sendError(
          res,
          429,
          `${a.model} is temporarily rate-limited upstream. Please retry shortly.`,
          "rate_limit_exceeded",
          { "retry-after": retryAfter },
          { provider_name: PROVIDER }
        )
      case "reset":
        record(k, "reset")
        req.socket.destroy()
        return
      case "stall":
        // Held open until the client gives up; closing the server destroys the socket.
        record(k, "stall")
        return
    }
  }

  const onChat = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    k: KeyState | undefined,
    raw: string
  ) => {
    if (k === undefined) {
      global.unauthenticated++
      record(undefined, "401")
      return sendError(
        res,
        401,
        req.headers.authorization === undefined ? "No auth credentials found" : "User not found.",
        "authentication"
      )
    }
    if (k.revoked) {
      record(k, "401")
      return sendError(res, 401, "This API key is disabled", "authentication")
    }
    let body: unknown
    try {
      body = JSON.parse(raw)
    } catch {
      record(k, "400")
      return sendError(res, 400, "Invalid JSON in request body", undefined)
    }
    const bad = (message: string) => {
      record(k, "400")
      sendError(res, 400, message, undefined)
    }
    if (!isRecord(body)) return bad("Request body must be a JSON object")
    const model = body.model
    if (typeof model !== "string" || model.length === 0)
      return bad('"model" is required and must be a string')
    const messages = body.messages
    if (!Array.isArray(messages) || messages.length === 0)
      return bad('"messages" is required and must be a non-empty array')
    let promptChars = 0
    for (const m of messages) {
      if (!isRecord(m) || typeof m.role !== "string")
        return bad('each of "messages" must be an object with a "role"')
      promptChars += textLength(m.content)
    }
    const maxTokens = body.max_tokens ?? body.max_completion_tokens
    if (
      maxTokens !== undefined &&
      maxTokens !== null &&
      !(Number.isInteger(maxTokens) && (maxTokens as number) > 0)
    )
      return bad('"max_tokens" must be a positive integer')
    if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean")
      return bad('"stream" must be a boolean')
    const price = models.get(model)
    if (price === undefined) {
      record(k, "400")
      return sendError(res, 400, `${model} is not a valid model ID`, "model_not_found", undefined, { model })
    }

    const now = Date.now()
    const acc = k.account
    acc.requests++
    if (acc.rpm !== null) {
      // A window opens at the first request after the previous one ended.
      if (now >= acc.windowStart + acc.windowMs) {
        acc.windowStart = now
        acc.count = 0
      }
      const windowStart = acc.windowStart
      if (acc.count >= acc.rpm) {
        acc.rateLimited++
        record(k, "429")
        const reset = windowStart + acc.windowMs
        return sendError(
          res,
          429,
          "Rate limit exceeded: too many requests for this account",
          "rate_limit_exceeded",
          {
            "retry-after": String(Math.max(1, Math.ceil((reset - now) / 1000))),
            "x-ratelimit-limit": String(acc.rpm),
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": String(reset)
          }
        )
      }
      acc.count++
    }

    const promptTokens = messages.length * 4 + Math.ceil(promptChars / 4)
    const completionTokens = typeof maxTokens === "number" ? maxTokens : defaultCompletionTokens
    const cost = promptTokens * price.prompt + completionTokens * price.completion
    // Checked on arrival, debited on completion: concurrent requests can overshoot a small cap.
    roll(k, now)
    if (k.limit !== null && cost > k.limit - k.periodUsage + EPSILON) {
      record(k, "402")
      const perToken = price.completion > 0 ? price.completion : 1
      const affordable = Math.max(
        0,
        Math.floor((k.limit - k.periodUsage - promptTokens * price.prompt) / perToken)
      )
      return sendError(
        res,
        402,
        `This request requires more credits, or fewer max_tokens. You requested up to ${completionTokens} tokens, but can only afford ${affordable}.`,
        "payment_required"
      )
    }

    const admitted: Admitted = {
      key: k,
      model,
      promptTokens,
      completionTokens,
      cost,
      stream: body.stream === true,
      arrivedAt: now
    }
    const kind = nextFault(k)
    if (kind === "stall") return perform(req, res, admitted, kind)
    const delay = sampleLatency(k.latency ?? globalLatency, k.latencyRng)
    if (delay < 1) return perform(req, res, admitted, kind)
    setTimeout(perform, delay, req, res, admitted, kind)
  }

  const chat = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const k = bySecret.get(bearer(req.headers.authorization) ?? "")
    global.requests++
    if (++global.inFlight > global.maxInFlight) global.maxInFlight = global.inFlight
    if (k !== undefined) {
      k.requests++
      if (++k.inFlight > k.maxInFlight) k.maxInFlight = k.inFlight
    }
    res.once("close", () => {
      global.inFlight--
      if (k !== undefined) k.inFlight--
    })
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.once("end", () =>
      onChat(
        req,
        res,
        k,
        chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8")
      )
    )
  }

  // ---------------------------------------------------------------------------------------------
  // Other endpoints

  /** The caller's key, or an answer already sent. */
  const authenticate = (req: http.IncomingMessage, res: http.ServerResponse): KeyState | undefined => {
    const header = req.headers.authorization
    const k = bySecret.get(bearer(header) ?? "")
    if (k === undefined) {
      sendError(
        res,
        401,
        header === undefined ? "No auth credentials found" : "User not found.",
        "authentication"
      )
      return undefined
    }
    if (k.revoked) {
      sendError(res, 401, "This API key is disabled", "authentication")
      return undefined
    }
    return k
  }

  const keyInfo = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const k = authenticate(req, res)
    if (k === undefined) return
    k.keyLookups++
    roll(k, Date.now())
    const a = k.account
    const ofPeriod = (period: "daily" | "weekly" | "monthly") =>
      k.limitReset === period ? k.periodUsage : k.usage
    sendJson(
      res,
      200,
      JSON.stringify({
        data: {
          label: k.label,
          limit: k.limit,
          limit_remaining: remaining(k),
          limit_reset: k.limitReset,
          usage: k.usage,
          usage_daily: ofPeriod("daily"),
          usage_weekly: ofPeriod("weekly"),
          usage_monthly: ofPeriod("monthly"),
          byok_usage: 0,
          is_free_tier: k.isFreeTier,
          is_provisioning_key: k.management,
          expires_at: k.expiresAt,
          rate_limit: { requests: a.rpm ?? -1, interval: `${Math.round(a.windowMs / 1000)}s` }
        }
      })
    )
  }

  const credits = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const k = authenticate(req, res)
    if (k === undefined) return
    if (!k.management) {
      return sendError(res, 403, "Only management keys can fetch credits", "permission_denied")
    }
    let usage = 0
    let caps = 0
    for (const other of keys) {
      if (other.account !== k.account) continue
      usage += other.usage
      caps += other.limit ?? 0
    }
    sendJson(
      res,
      200,
      JSON.stringify({ data: { total_credits: k.account.totalCredits ?? caps, total_usage: usage } })
    )
  }

  const modelsBody = JSON.stringify({
    data: modelList.map((m) => ({
      id: m.id,
      canonical_slug: m.id,
      name: m.id,
      created: 1_700_000_000,
      description: `Simulated ${m.id}`,
      context_length: m.contextLength ?? 128_000,
      architecture: { modality: "text->text", input_modalities: ["text"], output_modalities: ["text"] },
      pricing: {
        prompt: (m.promptPrice / 1e6).toFixed(12).replace(/\.?0+$/, ""),
        completion: (m.completionPrice / 1e6).toFixed(12).replace(/\.?0+$/, ""),
        request: "0",
        image: "0"
      },
      top_provider: {
        context_length: m.contextLength ?? 128_000,
        max_completion_tokens: null,
        is_moderated: false
      },
      supported_parameters: ["max_tokens", "temperature", "stream"]
    }))
  })

  const generation = (req: http.IncomingMessage, res: http.ServerResponse, query: string): void => {
    const k = authenticate(req, res)
    if (k === undefined) return
    const id = new URLSearchParams(query).get("id")
    if (id === null || id === "") return sendError(res, 400, '"id" query parameter is required', undefined)
    const g = generations.get(id)
    if (g === undefined || g.account !== k.account.name)
      return sendError(res, 404, `Generation ${id} not found`, undefined)
    sendJson(
      res,
      200,
      JSON.stringify({
        data: {
          id: g.id,
          total_cost: g.cost,
          usage: g.cost,
          created_at: g.createdAt,
          model: g.model,
          is_byok: false,
          provider_name: PROVIDER,
          streamed: g.streamed,
          cancelled: false,
          latency: g.latencyMs,
          generation_time: g.latencyMs,
          finish_reason: "stop",
          native_finish_reason: "stop",
          tokens_prompt: g.promptTokens,
          tokens_completion: g.completionTokens,
          native_tokens_prompt: g.promptTokens,
          native_tokens_completion: g.completionTokens,
          native_tokens_reasoning: 0
        }
      })
    )
  }

  // ---------------------------------------------------------------------------------------------
  // Stats and updates

  const stats = (): Simulator.Stats => {
    const keyStats: Record<string, Simulator.KeyStats> = {}
    const now = Date.now()
    for (const k of keys) {
      roll(k, now)
      keyStats[k.label] = {
        label: k.label,
        account: k.account.name,
        requests: k.requests,
        byOutcome: { ...k.byOutcome },
        inFlight: k.inFlight,
        maxInFlight: k.maxInFlight,
        spend: k.spend,
        overspend: k.overspend,
        overspentRequests: k.overspentRequests,
        usage: k.usage,
        limit: k.limit,
        limitRemaining: remaining(k),
        revoked: k.revoked,
        keyLookups: k.keyLookups
      }
    }
    const accountStats: Record<string, Simulator.AccountStats> = {}
    for (const a of accounts.values())
      accountStats[a.name] = { requests: a.requests, rateLimited: a.rateLimited }
    return {
      requests: global.requests,
      byOutcome: { ...global.byOutcome },
      inFlight: global.inFlight,
      maxInFlight: global.maxInFlight,
      unauthenticated: global.unauthenticated,
      spend: global.spend,
      overspend: global.overspend,
      keys: keyStats,
      accounts: accountStats
    }
  }

  const resetStats = (): void => {
    global.requests = 0
    global.byOutcome = {}
    global.maxInFlight = global.inFlight
    global.unauthenticated = 0
    global.spend = 0
    global.overspend = 0
    for (const k of keys) {
      k.requests = 0
      k.byOutcome = {}
      k.maxInFlight = k.inFlight
      k.spend = 0
      k.overspend = 0
      k.overspentRequests = 0
      k.keyLookups = 0
    }
    for (const a of accounts.values()) {
      a.requests = 0
      a.rateLimited = 0
    }
  }

  const updateKey = (label: string, update: Simulator.KeyUpdate): boolean => {
    const k = byLabel.get(label)
    if (k === undefined) return false
    if (update.faults !== undefined) applyFaults(k, update.faults)
    if (update.revoked !== undefined) k.revoked = update.revoked
    if (update.limit !== undefined) k.limit = update.limit
    if (update.usage !== undefined) {
      k.usage = update.usage
      k.periodUsage = update.usage
    }
    if (update.limitReset !== undefined || update.resetPeriodMs !== undefined) {
      if (update.limitReset !== undefined) k.limitReset = update.limitReset
      if (update.resetPeriodMs !== undefined) k.resetPeriodMs = update.resetPeriodMs
      k.periodStart = Date.now()
    }
    if (update.management !== undefined) k.management = update.management
    return true
  }

  const resetCredit = (label: string): boolean => {
    const k = byLabel.get(label)
    if (k === undefined) return false
    k.periodUsage = 0
    k.periodStart = Date.now()
    return true
  }

  const setScript = (
    label: string,
    script: ReadonlyArray<Simulator.FaultKind>,
    loop: boolean | undefined
  ): boolean => {
    const k = byLabel.get(label)
    if (k === undefined) return false
    k.script = script
    k.loop = loop ?? false
    k.scriptPos = 0
    return true
  }

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = req.url ?? "/"
    const q = url.indexOf("?")
    const path = q === -1 ? url : url.slice(0, q)
    if (path === "/api/v1/chat/completions") {
      if (req.method === "POST") return chat(req, res)
      req.resume()
      return sendError(res, 405, "Method Not Allowed", undefined, { allow: "POST" })
    }
    req.resume()
    const get = req.method === "GET"
    switch (path) {
      case "/api/v1/key":
      case "/api/v1/auth/key":
        return get
          ? keyInfo(req, res)
          : sendError(res, 405, "Method Not Allowed", undefined, { allow: "GET" })
      case "/api/v1/credits":
        return get
          ? credits(req, res)
          : sendError(res, 405, "Method Not Allowed", undefined, { allow: "GET" })
      case "/api/v1/models":
        return get
          ? sendJson(res, 200, modelsBody)
          : sendError(res, 405, "Method Not Allowed", undefined, { allow: "GET" })
      case "/api/v1/generation":
        return get
          ? generation(req, res, q === -1 ? "" : url.slice(q + 1))
          : sendError(res, 405, "Method Not Allowed", undefined, { allow: "GET" })
      // For benchmarks that run the simulator as a separate process.
      case "/__simulator/stats":
        return sendJson(res, 200, JSON.stringify(stats()))
      case "/__simulator/reset":
        if (req.method !== "POST")
          return sendError(res, 405, "Method Not Allowed", undefined, { allow: "POST" })
        resetStats()
        return sendJson(res, 200, "{}")
      default:
        return sendError(res, 404, `No route for ${req.method ?? "?"} ${path}`, undefined)
    }
  }

  return {
    handler,
    stats,
    resetStats,
    resetCredit,
    simulatedKeys: () => keys.map(simulatedKey),
    updateKey,
    setScript,
    addKey,
    updateAccount
  }
}

const noop = (): void => {}

// Kept here rather than imported from the public module, which imports this one.
const defaultModelsFallback: ReadonlyArray<Simulator.ModelConfig> = [
  { id: "openai/gpt-4o-mini", promptPrice: 0.15, completionPrice: 0.6, contextLength: 128_000 },
  { id: "anthropic/claude-sonnet-4", promptPrice: 3, completionPrice: 15, contextLength: 200_000 },
  { id: "google/gemini-2.0-flash-001", promptPrice: 0.1, completionPrice: 0.4, contextLength: 1_048_576 },
  {
    id: "meta-llama/llama-3.1-8b-instruct",
    promptPrice: 0.02,
    completionPrice: 0.05,
    contextLength: 131_072
  },
  { id: "meta-llama/llama-3.3-70b-instruct:free", promptPrice: 0, completionPrice: 0, contextLength: 131_072 }
]

export const defaultModels = defaultModelsFallback

export interface Running {
  readonly port: number
  readonly close: (done: () => void) => void
}

export const listen = (
  core: Core,
  port: number,
  cb: (result: Either.Either<Running, string>) => void
): void => {
  const server = http.createServer({ noDelay: true, keepAlive: true }, core.handler)
  // Stalls must last until the client gives up, and idle keep-alive sockets should outlive a benchmark pause.
  server.requestTimeout = 0
  server.headersTimeout = 0
  server.keepAliveTimeout = 60_000
  const sockets = new Set<net.Socket>()
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  })
  const onError = (error: Error) => cb(Either.left(`cannot listen on 127.0.0.1:${port}: ${error.message}`))
  server.once("error", onError)
  server.listen(port, "127.0.0.1", () => {
    server.off("error", onError)
    server.on("error", noop)
    const address = server.address() as net.AddressInfo
    cb(
      Either.right({
        port: address.port,
        close: (done) => {
          server.close(() => done())
          // Destroy open sockets (keep-alive, stalls, slow bodies) so close never hangs.
          for (const socket of sockets) socket.destroy()
        }
      })
    )
  })
}
