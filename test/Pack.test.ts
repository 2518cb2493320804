/**
 * The packages as someone outside this repository gets them: packed with `pnpm pack` (whose
 * `prepack` builds each one; `workspace:` and `catalog:` versions rewritten, `publishConfig`
 * applied), installed from the tarballs with plain `npm` into an empty folder, and used with plain
 * Node (no pnpm, no tsx): every entry point imports, the declarations type-check a consumer,
 * `internal/*` stays sealed, there is one copy of `effect`, and the installed `or-balancer` prints
 * its help, runs the simulator and the gateway, answers a chat through them, checks the keys,
 * reloads on SIGHUP and drains on SIGTERM.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { portIsFree, run, start, waitFor } from "./Processes.js"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const packages = ["core", "strategies", "http", "simulator", "redis", "gateway"] as const

const readJson = (file: string): any => JSON.parse(fs.readFileSync(file, "utf8"))
const pnpm: string = readJson(path.join(root, "package.json")).packageManager
const isEffect = (name: string) => name === "effect" || name.startsWith("@effect/")

/** Every `effect` and `@effect/*` package a published package asks of its consumer. */
const peers = [
  ...new Set(
    packages.flatMap((p) =>
      Object.keys(readJson(path.join(root, "packages", p, "package.json")).peerDependencies ?? {})
    )
  )
].filter(isEffect)

/** The default catalog's pinned versions: the consumer gets the effect & co. the workspace tests with. */
const catalog = (): Record<string, string> => {
  const text = fs.readFileSync(path.join(root, "pnpm-workspace.yaml"), "utf8")
  const section = text.split(/^catalog:$/m)[1]!.split(/^\S/m)[0]!
  return Object.fromEntries(
    [...section.matchAll(/^\s+"?([@\w/.-]+)"?:\s*"?([^\s"]+)"?\s*$/gm)].map((m) => [m[1]!, m[2]!])
  )
}

/** The namespaces a package's `src/index.ts` re-exports. */
const namespaces = (pkg: string) =>
  [
    ...fs
      .readFileSync(path.join(root, "packages", pkg, "src/index.ts"), "utf8")
      .matchAll(/^export \* as (\w+) from/gm)
  ]
    .map((m) => m[1]!)
    .sort()

/** Every installed copy of a package, nested ones included. */
const copiesOf = (nodeModules: string, name: string): Array<string> => {
  const found: Array<string> = []
  const visit = (dir: string) => {
    if (!fs.existsSync(dir)) return
    for (const entry of fs.readdirSync(dir)) {
      const entries = entry.startsWith("@")
        ? fs.readdirSync(path.join(dir, entry)).map((e) => `${entry}/${e}`)
        : [entry]
      for (const pkg of entries) {
        if (pkg === name) found.push(path.join(dir, pkg))
        visit(path.join(dir, pkg, "node_modules"))
      }
    }
  }
  visit(nodeModules)
  return found
}

const consumerTs = `
import { Balancer } from "@or-balancer/core"
import * as Key from "@or-balancer/core/Key"
import { RoundRobin } from "@or-balancer/strategies"
import { OpenRouterClient } from "@or-balancer/http"
import { Simulator } from "@or-balancer/simulator"
import { Gateway, GatewayConfig } from "@or-balancer/gateway"
// @ts-expect-error internal modules are not exported
import * as Sealed from "@or-balancer/core/internal/balancer"

export const used = [Balancer.layer, Key, RoundRobin.layer, OpenRouterClient.layer, Simulator.make, Gateway.make, GatewayConfig.parse, Sealed]
// @ts-expect-error the declarations are real ones, not \`any\`: a function is no number
export const notAny: number = RoundRobin.layer
`

const importAll = `
const out = {}
for (const pkg of ${JSON.stringify(packages)}) out[pkg] = Object.keys(await import("@or-balancer/" + pkg)).sort()
out.subpath = typeof (await import("@or-balancer/core/Balancer")).layer
try { await import("@or-balancer/core/internal/balancer"); out.internal = "importable" } catch (e) { out.internal = e.code }
console.log(JSON.stringify(out))
`

describe("the packed packages, installed with plain npm", () => {
  it.scopedLive(
    "install from the tarballs; or-balancer --help, simulate, check, serve, one chat, SIGHUP reloads, SIGTERM exits 0",
    () =>
      Effect.gen(function* () {
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "or-balancer-pack-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(tmp, { recursive: true, force: true })))
        const tarballs = path.join(tmp, "tarballs")
        const app = path.join(tmp, "app")
        fs.mkdirSync(tarballs)
        fs.mkdirSync(app)

        // Pack: each package's `prepack` builds it (tsc -b tsconfig.build.json) first.
        yield* run("npx", ["-y", pnpm, "--filter", "./packages/*", "pack", "--pack-destination", tarballs], {
          cwd: root
        })
        const versions = packages.map((p) => readJson(path.join(root, "packages", p, "package.json")).version)
        const files = fs.readdirSync(tarballs).sort()
        assert.deepStrictEqual(files, packages.map((p, i) => `or-balancer-${p}-${versions[i]}.tgz`).sort())

        // Install with npm alone, next to the catalog's effect & co. (a consumer's own copies).
        const pins = catalog()
        for (const name of peers)
          assert.isString(pins[name], `${name}: a peer needs a pinned catalog version`)
        fs.writeFileSync(
          path.join(app, "package.json"),
          JSON.stringify({ name: "consumer", private: true, type: "module" })
        )
        yield* run(
          "npm",
          [
            "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            ...files.map((f) => path.join(tarballs, f)),
            ...peers.map((name) => `${name}@${pins[name]}`)
          ],
          { cwd: app }
        )
        const nodeModules = path.join(app, "node_modules")
        assert.isFalse(fs.existsSync(path.join(nodeModules, "tsx")), "tsx must not be needed")
        assert.isFalse(fs.existsSync(path.join(nodeModules, "pnpm")), "pnpm must not be needed")
        assert.deepStrictEqual(copiesOf(nodeModules, "effect"), [path.join(nodeModules, "effect")])

        for (const pkg of packages) {
          const dir = path.join(nodeModules, "@or-balancer", pkg)
          const manifest = readJson(path.join(dir, "package.json"))
          assert.strictEqual(manifest.license, "MIT", pkg)
          assert.isTrue(fs.existsSync(path.join(dir, "LICENSE")), `${pkg}: LICENSE`)
          assert.isString(manifest.description, pkg)
          assert.deepStrictEqual(manifest.exports["."], {
            types: "./dist/index.d.ts",
            default: "./dist/index.js"
          })
          assert.isNull(manifest.exports["./internal/*"], pkg)
          assert.notMatch(JSON.stringify(manifest), /workspace:|catalog:/, pkg)
          // Only what is packed: no tests, configs or build info.
          // The gateway also ships its status page's static files.
          assert.deepStrictEqual(
            fs.readdirSync(dir).sort(),
            [
              ...(pkg === "gateway" ? ["assets"] : []),
              "LICENSE",
              ...(fs.existsSync(path.join(root, "packages", pkg, "README.md")) ? ["README.md"] : []),
              "dist",
              "package.json",
              "src"
            ].sort(),
            pkg
          )
          // Effect comes from the consumer (one copy), at the tested version or a later compatible one.
          for (const name of Object.keys(manifest.dependencies ?? {})) {
            assert.isFalse(isEffect(name), `${pkg}: ${name} must be a peer dependency`)
          }
          assert.property(manifest.peerDependencies, "effect", pkg)
          for (const [name, range] of Object.entries(manifest.peerDependencies)) {
            if (isEffect(name)) assert.strictEqual(range, `^${pins[name]}`, `${pkg}: peer ${name}`)
          }
          for (const [name, range] of Object.entries(manifest.dependencies ?? {})) {
            if (name.startsWith("@or-balancer/"))
              assert.match(String(range), /^\^\d+\.\d+\.\d+$/, `${pkg} -> ${name}`)
          }
        }

        // Plain Node: every entry point, a subpath, and the sealed internals.
        const imported = JSON.parse(
          yield* run(process.execPath, ["--input-type=module", "-e", importAll], { cwd: app })
        )
        for (const pkg of packages) assert.deepStrictEqual(imported[pkg], namespaces(pkg), pkg)
        assert.strictEqual(imported.subpath, "function")
        assert.strictEqual(imported.internal, "ERR_PACKAGE_PATH_NOT_EXPORTED")

        // The declarations: a strict consumer type-checks against them.
        fs.writeFileSync(path.join(app, "consumer.ts"), consumerTs)
        fs.writeFileSync(
          path.join(app, "tsconfig.json"),
          JSON.stringify({
            compilerOptions: {
              strict: true,
              target: "ES2022",
              module: "NodeNext",
              moduleResolution: "NodeNext",
              noEmit: true,
              skipLibCheck: true,
              types: ["node"],
              typeRoots: [path.join(root, "node_modules/@types")]
            },
            files: ["consumer.ts"]
          })
        )
        yield* run(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", app], {
          cwd: app
        })

        // The installed command: a symlink to dist/bin/or-balancer.js, which Node runs by its shebang.
        const bin = path.join(nodeModules, ".bin", "or-balancer")
        assert.strictEqual(
          fs.realpathSync(bin),
          path.join(nodeModules, "@or-balancer/gateway/dist/bin/or-balancer.js")
        )
        const help = yield* run(bin, ["--help"], { cwd: app })
        for (const sub of ["serve", "check", "simulate"]) assert.include(help, sub)

        // The simulator on a free port, with two keys of its own (paths relative to the cwd).
        const secrets = {
          one: "sk-or-v1-pack-test-one-0123456789abcdef",
          two: "sk-or-v1-pack-test-two-0123456789abcdef"
        }
        fs.writeFileSync(
          path.join(app, "sim.json"),
          JSON.stringify({
            seed: 5,
            keys: Object.entries(secrets).map(([label, secret]) => ({ label, account: "acme", secret }))
          })
        )
        const sim = yield* start(bin, ["simulate", "--port", "0", "--config", "sim.json"], { cwd: app })
        const baseUrl = yield* waitFor(
          () => /listening: (http:\/\/\S+)/.exec(sim.out())?.[1],
          "simulator",
          sim
        )

        const token = "gw-pack-test-token-0123456789"
        const env = { GW_TOKEN: token, KEY_ONE: secrets.one, KEY_TWO: secrets.two }
        fs.writeFileSync(
          path.join(app, "gateway.json"),
          JSON.stringify({
            listen: { host: "127.0.0.1", port: 0 },
            baseUrl,
            tokens: ["GW_TOKEN"],
            accounts: { acme: {} },
            keys: [
              { id: "one", secretEnv: "KEY_ONE", account: "acme" },
              { id: "two", secretEnv: "KEY_TWO", account: "acme" }
            ],
            strategy: [{ name: "round-robin" }]
          })
        )
        const checked = yield* run(bin, ["check", "--config", "gateway.json"], { cwd: app, env })
        assert.match(checked, /^one\s+acme\s+yes/m)
        assert.match(checked, /^two\s+acme\s+yes/m)

        const gw = yield* start(bin, ["serve", "--config", "gateway.json"], { cwd: app, env })
        const url = yield* waitFor(
          () => /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(gw.out())?.[1],
          "gateway listening",
          gw
        )
        const answer = yield* Effect.promise(() =>
          fetch(`${url}/v1/chat/completions`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
            body: JSON.stringify({
              model: "openai/gpt-4o-mini",
              messages: [{ role: "user", content: "hello" }]
            })
          }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }))
        )
        assert.strictEqual(answer.status, 200, JSON.stringify(answer.body))
        assert.isString(answer.body.choices[0].message.content)
        assert.isNumber(answer.body.usage.cost)

        // The installed package ships the status page and its chart library (served from node_modules).
        const signIn = yield* Effect.promise(() =>
          fetch(`${url}/dashboard?token=${encodeURIComponent(token)}`, { redirect: "manual" })
        )
        assert.strictEqual(signIn.status, 303)
        const cookie = (signIn.headers.get("set-cookie") ?? "").split(";")[0]!
        for (const asset of ["/dashboard", "/dashboard/assets/uplot.js"]) {
          const r = yield* Effect.promise(() => fetch(`${url}${asset}`, { headers: { cookie } }))
          assert.strictEqual(r.status, 200, asset)
          assert.isAbove((yield* Effect.promise(() => r.text())).length, 1000, asset)
        }

        // SIGHUP to the installed command's own process reloads; it keeps serving.
        process.kill(gw.pid, "SIGHUP")
        yield* waitFor(() => (gw.out().includes("reloaded") ? true : undefined), "reload on SIGHUP", gw)
        assert.isNull(gw.proc.exitCode)

        // SIGTERM drains and exits 0, and nothing is left holding the port.
        process.kill(gw.pid, "SIGTERM")
        assert.strictEqual(yield* Effect.promise(() => gw.exited), 0, gw.out())
        assert.isTrue(yield* portIsFree(Number(new URL(url).port)))
        process.kill(sim.pid, "SIGTERM")
        assert.strictEqual(yield* Effect.promise(() => sim.exited), 0, sim.out())
        assert.isTrue(yield* portIsFree(Number(new URL(baseUrl).port)))

        for (const secret of Object.values(secrets)) {
          assert.notInclude(gw.out(), secret)
          assert.notInclude(checked, secret)
        }
        assert.notInclude(gw.out(), token)
      }),
    480_000
  )
})
