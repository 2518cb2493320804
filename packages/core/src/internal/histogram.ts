/**
 * A fixed-size log-bucketed latency histogram: constant memory however many samples it sees,
 * quantiles within ~5% (each bucket is 10% wider than the one before).
 */
const MIN_MS = 0.25
const GROWTH = 1.1
const BUCKETS = 160 // 0.25 ms .. ~1,000 s

const LOG_GROWTH = Math.log(GROWTH)

export interface Histogram {
  readonly counts: Uint32Array
  count: number
  sum: number
  max: number
}

export const make = (): Histogram => ({ counts: new Uint32Array(BUCKETS), count: 0, sum: 0, max: 0 })

const bucketOf = (ms: number): number => {
  if (ms <= MIN_MS) return 0
  const i = Math.ceil(Math.log(ms / MIN_MS) / LOG_GROWTH)
  return i >= BUCKETS ? BUCKETS - 1 : i
}

/** Upper bound of bucket i. */
const upper = (i: number): number => MIN_MS * Math.pow(GROWTH, i)

export const record = (h: Histogram, ms: number): void => {
  h.counts[bucketOf(ms)]!++
  h.count++
  h.sum += ms
  if (ms > h.max) h.max = ms
}

/** The q-quantile (0..1) in ms; 0 when empty. Reports a bucket's upper bound, capped by the max seen. */
export const quantile = (h: Histogram, q: number): number => {
  if (h.count === 0) return 0
  const rank = Math.max(1, Math.ceil(q * h.count))
  let seen = 0
  for (let i = 0; i < BUCKETS; i++) {
    seen += h.counts[i]!
    if (seen >= rank) return Math.min(upper(i), h.max)
  }
  return h.max
}
