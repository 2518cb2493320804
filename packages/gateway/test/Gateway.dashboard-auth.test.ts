// The dashboard's admin token: the ?token= sign-in, its cookie, bearer tokens, config errors.
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Gateway from "../src/Gateway.js"
import * as GatewayConfig from "../src/GatewayConfig.js"
import * as Simulator from "@or-balancer/simulator/Simulator"
import { ADMIN, chatBody, envOf, fileFor, post, secretsIn, simKeys, TOKEN } from "./GatewaySupport.js"

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
