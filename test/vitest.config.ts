import { defineProject } from "vitest/config"

// The packaging test: builds and packs the packages, installs the tarballs with plain npm into an
// empty folder and runs the installed `or-balancer`. Slow (a build and an npm install) and CPU-hungry,
// so it has a project of its own (`npx vitest run --project pack`) that runs after every other
// project (`groupOrder` 1; the others are 0), where its build cannot slow their timing-sensitive tests.
export default defineProject({
  test: {
    name: "pack",
    include: ["*.test.ts"],
    testTimeout: 480_000,
    hookTimeout: 60_000,
    sequence: { groupOrder: 1 }
  }
})
