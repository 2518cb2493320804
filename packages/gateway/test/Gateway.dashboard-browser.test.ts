// The dashboard in headless Chromium: live tables, bars, and never a secret in the page.
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"
import * as Gateway from "../src/Gateway.js"
import * as GatewayConfig from "../src/GatewayConfig.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { ADMIN, chatBody, envOf, fileFor, post, secretsIn, simKeys, TOKEN } from "./GatewaySupport.js"

const ROOT = fileURLToPath(new URL("../../../", import.meta.url))

// --- In a real browser ---------------------------------------------------------------------------

const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]

const MODEL = "openai/gpt-4o-mini"
/** A named client's token: its traffic shows in the Clients table, the token nowhere. */
const CLIENT_A = "client-a-token-5f0e1d2c3b4a"
const CLIENT_B = "client-b-token-9a8b7c6d5e4f"

/** Four keys on two accounts: one flaky (ejected now and then), one account with a tight rate limit. */
const browserScenario = Effect.gen(function* () {
  const keys = simKeys(["alpha", "beta", "gamma", "delta"]).map((k, i) => ({
    ...k,
    limit: [6, 5.6, 5.2, 5.4][i]!,
    ...(k.label === "gamma" ? { faults: { rates: { "500": 0.35 } } } : {}),
    ...(k.label === "delta" ? { account: "globex" } : {})
  }))
  const sim = yield* Simulator.make({
    seed: 11,
    keys,
    accounts: { acme: {}, globex: { rpm: 40, windowMs: 4000 } },
    models: [{ id: MODEL, promptPrice: 15, completionPrice: 60 }],
    latency: { kind: "lognormal", median: 60, p99: 400 },
    retryAfterSeconds: 2
  })
  const file = fileFor(sim, {
    accounts: { acme: {}, globex: {} },
    strategy: [
      { name: "health-aware", failureThreshold: 2, baseCooldownMs: 2500 },
      { name: "concurrency-limited" },
      { name: "credit-aware", estimate: 0.05, ttlMs: 60_000 }
    ],
    retry: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 50, budget: false },
    clients: [
      { id: "team-a", tokenEnv: "CLIENT_A", budget: { usd: 1000, period: "daily", reserveUsd: 0.05 } },
      // Priced from the model price table; small enough that its use shows.
      { id: "team-b", tokenEnv: "CLIENT_B", budget: { usd: 2, period: "daily" }, rpm: 600 }
    ]
  })
  const withCaps = {
    ...file,
    keys: file.keys.map((k, i) => ({
      ...k,
      ...(k.id === "delta" ? { account: "globex" } : {}),
      maxConcurrency: [6, 4, 3, 2][i]!
    }))
  }
  const env = ConfigProvider.fromMap(
    new Map([...envOf(sim), ["ADMIN_TOKEN", ADMIN], ["CLIENT_A", CLIENT_A], ["CLIENT_B", CLIENT_B]])
  )
  const gw = yield* Gateway.make(yield* GatewayConfig.decode(withCaps).pipe(Effect.withConfigProvider(env)))
  /** The same gateway with its own admin token, guarding /status too: the page's cookie no longer works. */
  const rotate = GatewayConfig.decode({
    ...withCaps,
    admin: { tokens: ["ADMIN_TOKEN"], protect: true }
  }).pipe(Effect.withConfigProvider(env), Effect.flatMap(gw.reload))
  return { sim, gw, rotate }
})

/**
 * Page-side source (run in the browser, hence a string): for each canvas matching the selector,
 * how many of its pixels carry a series colour (not the background, the grid or axis text).
 */
const colouredPixels = (selector: string) => `(() => {
  const colours = [[79, 156, 249], [245, 165, 36], [23, 201, 100], [243, 18, 96]]
  return [...document.querySelectorAll(${JSON.stringify(selector)})].map((canvas) => {
    const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height)
    let n = 0
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] < 128) continue
      for (const [r, g, b] of colours)
        if (Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) < 60) { n++; break }
    }
    return n
  })
})()`

describe("Dashboard in headless Chromium", () => {
  it.scopedLive(
    "the page signs in through the redirect and shows live rows and charts",
    () =>
      Effect.gen(function* () {
        const executable = execFileSync("sh", [path.join(ROOT, "scripts/chromium.sh")], {
          encoding: "utf8",
          timeout: 600_000
        })
          .trim()
          .split("\n")
          .pop()!
        const { sim, gw, rotate } = yield* browserScenario
        // Traffic from six clients for as long as the test runs.
        const client = Effect.forever(post(`${gw.url}/v1/chat/completions`, chatBody({ model: MODEL })))
        for (let i = 0; i < 5; i++) yield* Effect.forkScoped(client)
        // Two of them named clients.
        for (const token of [CLIENT_A, CLIENT_B])
          yield* Effect.forkScoped(
            Effect.forever(
              post(`${gw.url}/v1/chat/completions`, chatBody({ model: MODEL }), {
                authorization: `Bearer ${token}`
              })
            )
          )

        const profile = fs.mkdtempSync(path.join(os.tmpdir(), "or-balancer-chromium-"))
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => fs.rmSync(profile, { recursive: true, force: true }))
        )
        const context = yield* Effect.acquireRelease(
          Effect.promise(() =>
            chromium.launchPersistentContext(profile, {
              executablePath: executable,
              headless: true,
              args: CHROMIUM_FLAGS,
              viewport: { width: 1440, height: 900 },
              deviceScaleFactor: 1
            })
          ),
          (c) => Effect.promise(() => c.close())
        )
        const page = yield* Effect.promise(() => context.newPage())
        const problems: Array<string> = []
        const requested: Array<string> = []
        page.on("request", (r) => void requested.push(r.url()))
        page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`))
        page.on("console", (m) => {
          if (m.type() === "error") problems.push(`console: ${m.text()} (${m.location().url})`)
        })

        // Sign in: the token is traded for a cookie and leaves the address bar.
        const response = yield* Effect.promise(() => page.goto(`${gw.url}/dashboard?token=${TOKEN}`))
        assert.strictEqual(response?.status(), 200)
        assert.strictEqual(response?.request().redirectedFrom()?.url(), `${gw.url}/dashboard?token=${TOKEN}`)
        const first = yield* Effect.promise(() => response!.request().redirectedFrom()!.response())
        assert.strictEqual(first?.status(), 303)
        assert.strictEqual(page.url(), `${gw.url}/dashboard`)
        const cookies = yield* Effect.promise(() => context.cookies(gw.url))
        assert.strictEqual(cookies.length, 1)
        const cookie = cookies[0]!
        assert.strictEqual(cookie.name, "or_balancer_admin")
        assert.isTrue(cookie.httpOnly)
        assert.strictEqual(cookie.sameSite, "Strict")
        assert.strictEqual(cookie.path, "/")
        assert.notInclude(cookie.value, TOKEN)
        // HttpOnly: the page's scripts cannot read it.
        assert.strictEqual(yield* Effect.promise(() => page.evaluate("document.cookie")), "")

        // The page counts the /status answers it has drawn in <body data-samples>.
        const samples = () => page.evaluate("Number(document.body.dataset.samples ?? 0)") as Promise<number>
        // Polled from here: the page's CSP (rightly) forbids the eval that waitForFunction needs.
        const waitSamples = (n: number) =>
          Effect.gen(function* () {
            for (let i = 0; i < 300; i++) {
              if ((yield* Effect.promise(samples)) >= n) return
              yield* Effect.sleep(Duration.millis(100))
            }
            assert.fail(`the page drew fewer than ${n} samples in 30 s`)
          })
        yield* waitSamples(3)
        const requestsOf = (id: string) =>
          Effect.promise(() =>
            page
              .locator(`tr[data-key="${id}"] td[data-field="requests"]`)
              .textContent()
              .then((t) => Number((t ?? "").replace(/[^0-9]/g, "")))
          )
        const before = yield* requestsOf("alpha")
        const at = yield* Effect.promise(samples)
        yield* waitSamples(at + 2)
        const after = yield* requestsOf("alpha")
        assert.isAbove(after, before, "alpha's request count grows while traffic flows")

        // Every key has a row; live numbers in its cells.
        for (const id of ["alpha", "beta", "gamma", "delta"]) {
          const row = page.locator(`tr[data-key="${id}"]`)
          const text = (field: string) =>
            Effect.promise(() => row.locator(`td[data-field="${field}"]`).innerText())
          assert.match(yield* text("credit"), /^\$\d/, `${id} credit`)
          assert.match(yield* text("cost"), /^\$\d/, `${id} cost`)
          assert.match(yield* text("inFlight"), /^\d+ \/ \d+/, `${id} in flight against its cap`)
          assert.match(yield* text("state"), /healthy|cooling|ejected|half-open/, `${id} state`)
        }
        const total = yield* Effect.promise(() => page.locator('[data-total="rps"]').innerText())
        assert.isAbove(Number(total), 0, "requests per second")
        const accounts = yield* Effect.promise(() => page.locator("#accounts tbody tr").count())
        assert.strictEqual(accounts, 2)
        // The named client's row: live requests and spend, and its budget left.
        const clientCell = (field: string) =>
          Effect.promise(() => page.locator(`tr[data-client="team-a"] td[data-field="${field}"]`).innerText())
        assert.isAbove(Number((yield* clientCell("requests")).replace(/[^0-9]/g, "")), 0)
        assert.match(yield* clientCell("spend"), /^\$\d/)
        assert.match(yield* clientCell("budget"), /of \$1000 daily/)
        // Each budget's use this period: share, spent and held, and a bar.
        assert.match(yield* clientCell("used"), /^\d+\.\d% · \$[\d.]+ spent, \$[\d.]+ held/)
        const usedB = () =>
          Effect.promise(() => page.locator(`tr[data-client="team-b"] td[data-field="used"]`).innerText())
        for (let i = 0; i < 50 && (yield* usedB()).startsWith("0.0%"); i++)
          yield* Effect.sleep(Duration.millis(100))
        assert.notMatch(yield* usedB(), /^0\.0%/)

        // Let the charts gather some history, then check they draw series, not just axes.
        yield* waitSamples(12)
        const charts = yield* Effect.promise(() => page.locator(".uplot canvas").count())
        assert.strictEqual(charts, 3)
        const chartPixels = yield* Effect.promise(
          () => page.evaluate(colouredPixels(".uplot canvas")) as Promise<Array<number>>
        )
        for (const [i, n] of chartPixels.entries()) assert.isAbove(n, 200, `chart ${i} draws its series`)
        const sparkPixels = yield* Effect.promise(
          () => page.evaluate(colouredPixels('td[data-field="rps"] canvas')) as Promise<Array<number>>
        )
        assert.strictEqual(sparkPixels.length, 4)
        for (const n of sparkPixels) assert.isAbove(n, 20, "a request-rate sparkline draws")

        // No secret reached the page.
        const html = yield* Effect.promise(() => page.content())
        assert.deepStrictEqual(secretsIn(sim, html), [])
        assert.notInclude(html, CLIENT_A)
        assert.notInclude(html, CLIENT_B)
        assert.deepStrictEqual(problems, [])
        // Offline: everything the page loaded came from the gateway (no CDN).
        assert.deepStrictEqual(
          requested.filter((u) => !u.startsWith(`${gw.url}/`) && !u.startsWith("data:")),
          []
        )
        assert.includeMembers(
          requested.map((u) => new URL(u).pathname),
          ["/dashboard/assets/uplot.js", "/dashboard/assets/charts.js", "/status"]
        )

        // The README's picture is refreshed on request (OR_UPDATE_SCREENSHOT=1), so a test run leaves
        // the work tree clean; otherwise the screenshot goes to a temporary folder.
        const shot =
          process.env.OR_UPDATE_SCREENSHOT === "1"
            ? path.join(ROOT, "docs/dashboard.png")
            : path.join(os.tmpdir(), `or-balancer-dashboard-${process.pid}.png`)
        fs.mkdirSync(path.dirname(shot), { recursive: true })
        yield* Effect.promise(() => page.screenshot({ path: shot, fullPage: true }))
        assert.isAbove(fs.statSync(shot).size, 10_000)

        // The admin token rotates and /status is guarded: the page says it is signed out.
        yield* rotate
        const state = () => Effect.promise(() => page.locator("#state").innerText())
        for (let i = 0; i < 50 && !(yield* state()).includes("signed out"); i++)
          yield* Effect.sleep(Duration.millis(100))
        assert.include(yield* state(), "signed out")
      }),
    180_000
  )
})
