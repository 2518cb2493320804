/**
 * The fast path, for code that runs on callbacks or promises (a server, a queue consumer):
 * `Balancer.unsafeStart` leases a request's first attempt synchronously, with no fiber, and the
 * caller settles it when the answer ends. Only a failed first attempt goes on in Effect
 * (`started.run(use)`), which fails over as usual. One of the three keys is revoked: the
 * requests that start on it fail over to the next key, and every caller gets an answer.
 */
import * as Balancer from "@or-balancer/core/Balancer"
import type * as Key from "@or-balancer/core/Key"
import * as UpstreamError from "@or-balancer/core/UpstreamError"
import * as ErrorMapping from "@or-balancer/http/ErrorMapping"
import * as OpenRouterClient from "@or-balancer/http/OpenRouterClient"
import type * as Simulator from "@or-balancer/simulator/Simulator"
import * as RoundRobin from "@or-balancer/strategies/RoundRobin"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Pools from "../lib/Pools.js"
import * as Stack from "../lib/Stack.js"
import * as Runner from "../lib/Runner.js"

const pool = Pools.healthy(3)
export const simulator: Simulator.Config = {
  ...pool,
  keys: pool.keys.map((k) => (k.label === "key-2" ? { ...k, revoked: true } : k))
}

const MODEL = "openai/gpt-4o-mini"

interface Answer {
  readonly text: string
  readonly cost: number | undefined
  readonly key: string
}

export const program = Effect.gen(function* () {
  const balancer = yield* Balancer.Balancer
  const { baseUrl } = yield* OpenRouterClient.ClientConfig
  const clock = yield* Effect.clock
  const runtime = yield* Effect.runtime<never>()

  // Plain promise code: one upstream call with one key. An error answer becomes the balancer's
  // typed error (a 401 is `Unauthorized`, which fails over to another key); it never rejects.
  const call = (key: Key.Key, body: string): Promise<Answer | UpstreamError.UpstreamError> =>
    fetch(`${key.baseUrl ?? baseUrl}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${Redacted.value(key.secret)}`, "content-type": "application/json" },
      body
    }).then(
      async (res) => {
        const text = await res.text()
        if (!res.ok) {
          return ErrorMapping.fromResponse(res.status, res.headers, text, {
            now: clock.unsafeCurrentTimeMillis(),
            model: MODEL
          })
        }
        const json = JSON.parse(text) as {
          choices?: Array<{ message?: { content?: string } }>
          usage?: { cost?: number }
        }
        return { text: json.choices?.[0]?.message?.content ?? "", cost: json.usage?.cost, key: key.id }
      },
      (e: unknown) =>
        new UpstreamError.Transport({ message: `upstream connection failed: ${(e as Error).message}` })
    )

  // The same call for the Effect path: the balancer's retries and failover.
  const attempt = (body: string) => (key: Key.Key) =>
    Effect.flatMap(
      Effect.promise(() => call(key, body)),
      (r) => (UpstreamError.isUpstreamError(r) ? Effect.fail(r) : Effect.succeed(r))
    )

  const chat = (prompt: string): Promise<Answer & { readonly path: "fast" | "failover" | "fiber" }> => {
    const body = JSON.stringify(Pools.ask(prompt, MODEL))
    const started = balancer.unsafeStart({ model: MODEL })
    // Not startable synchronously (no key eligible right now, say): the whole request on a fiber.
    if (started === undefined) {
      return Runtime.runPromise(runtime)(
        balancer.run({ model: MODEL }, attempt(body), { costOf: (a) => a.cost })
      ).then((a) => ({ ...a, path: "fiber" as const }))
    }
    return call(started.key, body).then((r) => {
      if (!UpstreamError.isUpstreamError(r)) {
        started.unsafeSucceed(r.cost)
        return { ...r, path: "fast" as const }
      }
      started.unsafeFail(r)
      // Nothing reached the caller yet: the attempt goes on through the balancer's loop.
      return Runtime.runPromise(runtime)(started.run(attempt(body), { costOf: (a) => a.cost })).then((a) => ({
        ...a,
        path: "failover" as const
      }))
    })
  }

  const answers = yield* Effect.promise(() =>
    Promise.all(Array.from({ length: 9 }, (_, i) => chat(`Question ${i}`)))
  )
  for (const [i, a] of answers.entries()) {
    yield* Console.log(`request ${i}: ${a.path.padEnd(8)} answered by ${a.key}`)
  }
  const served: Record<string, number> = {}
  const paths: Record<string, number> = {}
  for (const a of answers) {
    served[a.key] = (served[a.key] ?? 0) + 1
    paths[a.path] = (paths[a.path] ?? 0) + 1
  }
  yield* Console.log(`paths: ${JSON.stringify(paths)}; served: ${JSON.stringify(served)}`)
  return { answers: answers.length, served, paths }
}).pipe(Effect.provide(Stack.layer(RoundRobin.layer())))

export const main = (options?: Runner.Options) => Runner.main({ simulator, program }, options)
