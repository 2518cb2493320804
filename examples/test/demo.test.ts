import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Simulator from "@or-balancer/simulator/Simulator"
import * as Redacted from "effect/Redacted"
import { demo } from "../src/demo.js"
import * as Runner from "../src/lib/Runner.js"

describe("demo", () => {
  it.live(
    "runs in-process, writes demo.json with per-key rows and totals, and no secret",
    () =>
      Effect.gen(function* () {
        const outDir = fs.mkdtempSync(path.join(os.tmpdir(), "or-demo-"))
        const out = Runner.capture()
        const report = yield* demo({
          requests: 300,
          concurrency: 16,
          outDir,
          tty: false,
          console: out.console
        })
        const text = fs.readFileSync(path.join(outDir, "demo.json"), "utf8")
        const json = JSON.parse(text) as typeof report
        expect(json.totals.requests).toBe(300)
        expect(json.totals.succeeded + json.totals.failed).toBe(300)
        // Only a stream failing after its first chunk may reach a caller (no replay).
        for (const kind of Object.keys(json.failures)) expect(kind).toMatch(/mid-stream/)
        expect(json.totals.overspend).toBe(0)
        expect(json.totals.streamed).toBeGreaterThan(0)
        expect(json.keys.map((k) => k.id).sort()).toEqual([
          "flaky",
          "primary",
          "rate-limited",
          "revoked",
          "small-cap"
        ])
        const revoked = json.keys.find((k) => k.id === "revoked")!
        expect(revoked.upstream["200"] ?? 0).toBe(0)
        expect(json.keys.reduce((a, k) => a + k.requests, 0)).toBe(json.totals.attempts)
        const printed = out.lines.join("\n")
        // Progress (at least the final line), the per-key table, totals and the bar chart.
        expect(printed).toMatch(/ {2}300\/300 {2}ok \d+ {2}failed \d+/)
        expect(printed).toMatch(
          /^key +account +requests +share +p50 ms +p99 ms +credit left +health +errors$/m
        )
        expect(printed).toMatch(/^primary +acme +\d+ +[\d.]+% +\d+ +\d+ +\$[\d.]+ +healthy/m)
        expect(printed).toMatch(/retries \d+ {2}spend \$[\d.]+/)
        // It ends with where the money went per named client, and each key's forecast.
        expect(json.clients.map((c) => c.id)).toEqual(["web-app", "batch-job"])
        expect(
          json.clients.reduce(
            (n, c) => n + c.requests + c.refused.budget + c.refused.rate + c.refused.model,
            0
          )
        ).toBe(40)
        // batch-job may not use anthropic/*: a third of its requests are refused with 403.
        expect(json.clients[1]!.refused.model).toBeGreaterThan(0)
        expect(json.clients[1]!.spendUsd).toBeLessThanOrEqual(0.004)
        expect(json.forecasts.map((f) => f.id).sort()).toEqual(json.keys.map((k) => k.id).sort())
        expect(printed).toMatch(/^where the money went, per client/m)
        expect(printed).toMatch(/^web-app +\d+ +\$[\d.]+ +\$[\d.]+/m)
        expect(printed).toMatch(/^credit forecast per key/m)
        expect(printed).not.toMatch(/demo-(web-app|batch-job)-token/)
        expect(printed).toContain("distribution of upstream attempts")
        expect(printed).toMatch(/^ {2}primary +█+·*/m)
        const primary = json.keys.find((k) => k.id === "primary")!
        expect(primary.p50Ms).toBeGreaterThan(0)
        expect(primary.p99Ms).toBeGreaterThanOrEqual(primary.p50Ms)
        expect(primary.creditLeft).toBeLessThan(50)
        expect(revoked.health).toMatch(/excluded/)
        expect(printed).toMatch(/requests 300 {2}succeeded/)
        // No secret of the pool, nor anything key-shaped, in the file or the output.
        for (const s of Simulator.demoPool(42).keys) {
          const secret = typeof s.secret === "string" ? s.secret : Redacted.value(s.secret)
          expect(text).not.toContain(secret)
          expect(printed).not.toContain(secret)
        }
        expect(text).not.toMatch(/sk-or-/)
        fs.rmSync(outDir, { recursive: true, force: true })
      }),
    60_000
  )
})
