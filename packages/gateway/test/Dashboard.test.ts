import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"
import * as Gateway from "../src/Gateway.js"
import * as GatewayConfig from "../src/GatewayConfig.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { chatBody, envOf, fileFor, post, simKeys, TOKEN } from "./GatewaySupport.js"

const ROOT = fileURLToPath(new URL("../../../", import.meta.url))
const ADMIN = "admin-token-9876543210-abcdef"

interface Got {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

const get = (url: string, headers: Record<string, string> = {}): Effect.Effect<Got> =>
  Effect.promise(() =>
    fetch(url, { headers, redirect: "manual" }).then(async (r) => ({
      status: r.status,
      headers: r.headers,
      text: await r.text()
    }))
  )

const start = (
  sim: Partial<Simulator.Config>,
  extra: Record<string, unknown> = {},
  env: Array<[string, string]> = []
) =>
  Effect.gen(function* () {
    const s = yield* Simulator.make({ seed: 7, keys: simKeys(["alpha", "beta"]), ...sim })
    const config = yield* GatewayConfig.decode(fileFor(s, extra)).pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map([...envOf(s), ...env])))
    )
    return { sim: s, gw: yield* Gateway.make(config) }
  })

/** The cookie a `?token=` visit sets, as `name=value`. */
const signIn = (url: string, token: string) =>
  Effect.gen(function* () {
    const r = yield* get(`${url}/dashboard?token=${encodeURIComponent(token)}`)
    assert.strictEqual(r.status, 303)
    return (r.headers.get("set-cookie") ?? "").split(";")[0]!
  })

const secretsIn = (sim: Simulator.Handle, text: string) =>
  [TOKEN, ADMIN, ...sim.keys.map((k) => Redacted.value(k.secret))].filter((s) => text.includes(s))

describe("Dashboard: the admin token and its cookie", () => {
  it.scopedLive("?token= sets an HttpOnly SameSite=Strict cookie and redirects; without it, 401", () =>
    Effect.gen(function* () {
      const { sim, gw } = yield* start({})
      for (const url of [
        `${gw.url}/dashboard`,
        `${gw.url}/dashboard?token=wrong`,
        `${gw.url}/dashboard/assets/app.js`
      ]) {
        const r = yield* get(url)
        assert.strictEqual(r.status, 401, url)
        assert.isNull(r.headers.get("set-cookie"))
        assert.notInclude(r.text, "<html")
      }
      const r = yield* get(`${gw.url}/dashboard?token=${TOKEN}`)
      assert.strictEqual(r.status, 303)
      assert.strictEqual(
        new URL(r.headers.get("location")!, `${gw.url}/dashboard?token=x`).href,
        `${gw.url}/dashboard`
      )
      assert.strictEqual(r.headers.get("cache-control"), "no-store")
      const cookie = r.headers.get("set-cookie")!
      const attrs = cookie.split(";").map((a) => a.trim())
      assert.deepStrictEqual(attrs.slice(1).sort(), ["HttpOnly", "Path=/", "SameSite=Strict"])
      // The cookie is derived from the token, never the token itself.
      assert.match(attrs[0]!, /^or_balancer_admin=[A-Za-z0-9_-]{43}$/)
      assert.notInclude(cookie, TOKEN)
      const session = attrs[0]!

      const page = yield* get(`${gw.url}/dashboard`, { cookie: session })
      assert.strictEqual(page.status, 200)
      assert.match(page.headers.get("content-type")!, /^text\/html/)
      assert.include(page.headers.get("content-security-policy")!, "script-src 'self'")
      assert.include(page.text, 'src="dashboard/assets/uplot.js"')
      for (const name of ["app.js", "charts.js", "tables.js", "app.css", "uplot.js", "uplot.css"]) {
        const asset = yield* get(`${gw.url}/dashboard/assets/${name}`, { cookie: session })
        assert.strictEqual(asset.status, 200, name)
        assert.deepStrictEqual(secretsIn(sim, asset.text), [])
        const again = yield* get(`${gw.url}/dashboard/assets/${name}`, {
          cookie: session,
          "if-none-match": asset.headers.get("etag")!
        })
        assert.strictEqual(again.status, 304)
      }
      assert.strictEqual(
        (yield* get(`${gw.url}/dashboard/assets/../package.json`, { cookie: session })).status,
        404
      )
      assert.strictEqual((yield* get(`${gw.url}/dashboard/assets/nope.js`, { cookie: session })).status, 404)
      // A forged or stale cookie, or the token itself as the cookie, is refused.
      for (const bad of ["or_balancer_admin=AAAA", `or_balancer_admin=${TOKEN}`, "other=1"]) {
        assert.strictEqual((yield* get(`${gw.url}/dashboard`, { cookie: bad })).status, 401, bad)
      }
      // Several cookies of that name: one good one is enough.
      assert.strictEqual(
        (yield* get(`${gw.url}/dashboard`, { cookie: `or_balancer_admin=x; ${session}` })).status,
        200
      )
      // The token in the query is traded for a cookie and kept out of the redirect.
      const kept = yield* get(`${gw.url}/dashboard?token=${TOKEN}&view=keys`)
      assert.strictEqual(kept.headers.get("location"), "dashboard?view=keys")
      // No secret on the page or in /status, which stays open by default.
      assert.deepStrictEqual(secretsIn(sim, page.text), [])
      yield* post(`${gw.url}/v1/chat/completions`, chatBody())
      const status = yield* get(`${gw.url}/status`)
      assert.strictEqual(status.status, 200)
      assert.deepStrictEqual(secretsIn(sim, status.text), [])
      assert.strictEqual((yield* get(`${gw.url}/metrics`)).status, 200)
      // Rotating the token (a reload with other admin tokens) signs the old cookie out.
      yield* gw.reload(
        yield* GatewayConfig.decode(fileFor(sim, { admin: { tokens: ["ADMIN_TOKEN"] } })).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([...envOf(sim), ["ADMIN_TOKEN", ADMIN]])))
        )
      )
      assert.strictEqual((yield* get(`${gw.url}/dashboard`, { cookie: session })).status, 401)
      const fresh = yield* signIn(gw.url, ADMIN)
      assert.strictEqual((yield* get(`${gw.url}/dashboard`, { cookie: fresh })).status, 200)
    })
  )

  it.scopedLive(
    "admin.tokens replace the gateway tokens; admin.protect puts /status and /metrics behind them",
    () =>
      Effect.gen(function* () {
        const { sim, gw } = yield* start({}, { admin: { tokens: ["ADMIN_TOKEN"], protect: true } }, [
          ["ADMIN_TOKEN", ADMIN]
        ])
        assert.strictEqual((yield* get(`${gw.url}/dashboard?token=${TOKEN}`)).status, 401)
        const session = yield* signIn(gw.url, ADMIN)
        for (const route of ["/status", "/metrics"]) {
          assert.strictEqual((yield* get(`${gw.url}${route}`)).status, 401, route)
          assert.strictEqual(
            (yield* get(`${gw.url}${route}`, { authorization: `Bearer ${TOKEN}` })).status,
            401,
            route
          )
          assert.strictEqual((yield* get(`${gw.url}${route}`, { cookie: session })).status, 200, route)
          const bearer = yield* get(`${gw.url}${route}`, { authorization: `Bearer ${ADMIN}` })
          assert.strictEqual(bearer.status, 200, route)
          assert.deepStrictEqual(secretsIn(sim, bearer.text), [])
          // The scheme is case-insensitive (RFC 9110 section 11.1).
          const lower = yield* get(`${gw.url}${route}`, { authorization: `bearer ${ADMIN}` })
          assert.strictEqual(lower.status, 200, route)
        }
        assert.strictEqual((yield* get(`${gw.url}/dashboard`, { cookie: session })).status, 200)
        // The chat routes still take the gateway token, not the admin one.
        assert.strictEqual((yield* post(`${gw.url}/v1/chat/completions`, chatBody())).status, 200)
        // /healthz stays open for load balancers.
        assert.strictEqual((yield* get(`${gw.url}/healthz`)).status, 200)
      })
  )

  it.scopedLive("an anonymous gateway with no admin token serves the dashboard openly", () =>
    Effect.gen(function* () {
      const { gw } = yield* start({}, { tokens: [], anonymous: true })
      assert.strictEqual((yield* get(`${gw.url}/dashboard`)).status, 200)
      const r = yield* get(`${gw.url}/dashboard?token=anything`)
      assert.strictEqual(r.status, 303)
      assert.isNull(r.headers.get("set-cookie"))
    })
  )

  it.effect("admin config errors name the field", () =>
    Effect.gen(function* () {
      const sim = { baseUrl: "http://127.0.0.1:1", keys: [] } as unknown as Simulator.Handle
      const decode = (extra: Record<string, unknown>) =>
        GatewayConfig.decode({ ...fileFor(sim, extra, ["alpha"]) }).pipe(
          Effect.withConfigProvider(
            ConfigProvider.fromMap(
              new Map([
                ["GW_TOKEN", TOKEN],
                ["KEY_ALPHA", Simulator.simulatedSecret(7, 0)]
              ])
            )
          ),
          Effect.flip
        )
      assert.strictEqual((yield* decode({ admin: { tokens: [] } })).path, "admin.tokens")
      assert.strictEqual((yield* decode({ admin: { tokens: ["MISSING"] } })).path, "admin.tokens[0]")
      assert.strictEqual(
        (yield* decode({ tokens: [], anonymous: true, admin: { protect: true } })).path,
        "admin.protect"
      )
    })
  )
})

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
