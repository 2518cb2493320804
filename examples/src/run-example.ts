/**
 * `pnpm example <name> [--real]`: runs `src/examples/<name>.ts` against the embedded simulator,
 * or against the real API with `--real` (needs `OPENROUTER_API_KEYS`).
 */
import { readdirSync } from "node:fs"
import { fileURLToPath } from "node:url"
import * as path from "node:path"

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), "examples")
const names = readdirSync(dir)
  .filter((f) => f.endsWith(".ts"))
  .map((f) => f.slice(0, -3))
  .sort()

const args = process.argv.slice(2).filter((a) => a !== "--")
const real = args.includes("--real")
const name = args.find((a) => !a.startsWith("--"))

if (name === undefined || !names.includes(name)) {
  console.error(`usage: pnpm example <name> [--real]\n\nexamples:\n  ${names.join("\n  ")}`)
  process.exit(name === undefined ? 0 : 1)
}
if (real && !process.env.OPENROUTER_API_KEYS) {
  console.error("--real needs OPENROUTER_API_KEYS (comma separated, each `secret` or `label=secret`)")
  process.exit(1)
}

const mod = (await import(`./examples/${name}.js`)) as {
  main: (options?: { real?: boolean }) => Promise<unknown>
}
try {
  await mod.main({ real })
} catch (e) {
  // Typed failures are printed by their tag and message only: they never carry a secret.
  const err = e as { _tag?: string; message?: string }
  console.error(`example failed: ${err._tag ?? "Error"}: ${err.message ?? String(e)}`)
  process.exit(1)
}
