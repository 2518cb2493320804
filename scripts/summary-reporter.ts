import type { Reporter, TestModule } from "vitest/node"

/** Ends every run with a plain `N passed, N failed` line, so a run that executed nothing is visible. */
export default class SummaryReporter implements Reporter {
  async onTestRunEnd(testModules: ReadonlyArray<TestModule>) {
    // The default reporter prints its summary in the same tick: let it, so ours is the last line.
    await new Promise((resolve) => setTimeout(resolve, 20))
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state
        if (state === "passed") passed++
        else if (state === "failed") failed++
        else skipped++
      }
      // A file that failed to load has no tests but is still a failure.
      if (module.state() === "failed" && module.children.size === 0) failed++
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}\n`)
  }
}
