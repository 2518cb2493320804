import { defineProject } from "vitest/config"

// The packaging test: builds and packs the packages, installs the tarballs with plain npm into an
// empty folder and runs the installed `or-balancer`. Slow (a build and an npm install), so it has a
// project of its own: `npx vitest run --project pack`.
export default defineProject({
  test: { name: "pack", include: ["*.test.ts"], testTimeout: 300_000, hookTimeout: 60_000 }
})
