import { defineProject } from "vitest/config"

// Each test file starts its own redis-server on a free loopback port.
export default defineProject({
  test: { include: ["test/**/*.test.ts"], testTimeout: 30_000, hookTimeout: 30_000 }
})
