/**
 * The simulator's own seeded randomness. It is test infrastructure, so it does not go through
 * Effect's `Random`: each key gets independent streams so its faults depend only on the order
 * of that key's own requests.
 */

/** mulberry32: tiny, fast, good enough for fault injection; returns a float in [0, 1). */
export const mulberry32 = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** FNV-1a, to derive independent per-key seeds from the global seed and a label. */
export const hash32 = (text: string, seed = 0x811c9dc5): number => {
  let h = seed >>> 0
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h >>> 0
}

export const deriveSeed = (seed: number, ...parts: ReadonlyArray<string>): number => {
  let h = hash32(String(seed))
  for (const part of parts) h = hash32(part, h ^ 0x9e3779b9)
  return h
}

/** A fake key that looks like a real one: "sk-or-v1-" + 64 hex characters, fixed by seed and index. */
export const simulatedSecret = (seed: number, index: number): string => {
  const next = mulberry32(deriveSeed(seed, "secret", String(index)))
  let hex = ""
  for (let i = 0; i < 8; i++) {
    hex += Math.floor(next() * 4294967296)
      .toString(16)
      .padStart(8, "0")
  }
  return `sk-or-v1-${hex}`
}

/** A standard normal draw (Box-Muller), from two uniforms. */
export const normal = (next: () => number): number => {
  const u = 1 - next() // (0, 1], so log is finite
  const v = next()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}
