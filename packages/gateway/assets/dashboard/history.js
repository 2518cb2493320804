// The samples this tab keeps: one per /status answer, as rates over the time since the previous
// one, for the last few minutes. Nothing is kept anywhere but in this tab.
// @ts-check

const KEEP = 300 // samples: five minutes at one a second
const TREND_S = 60 // seconds of history behind a credit trend
const RATE_N = 5 // samples behind the request and error rates shown as numbers

/** @type {Array<number>} sample times, epoch seconds */
export const times = []
/** @type {Array<number|null>} seconds since the previous sample (null: no comparable previous one) */
const gaps = []
/**
 * Per key id: arrays aligned with `times` (null where the key had no value); `req`, `done` and
 * `fail` are the counts that arrived in each interval.
 * @typedef {Array<number|null>} Col
 * @typedef {{rps: Col, err: Col, share: Col, credit: Col, p50: Col, p99: Col, req: Col, done: Col, fail: Col}} History
 * @type {Map<string, History>}
 */
export const series = new Map()
/** @type {any} the previous /status answer, for per-second deltas */
let prev
let prevAt = 0

const push = (/** @type {Array<any>} */ arr, /** @type {any} */ v) => {
  arr.push(v)
  if (arr.length > KEEP) arr.shift()
}

/** Records one /status answer as rates over the time since the previous one. */
export const ingest = (/** @type {any} */ s, /** @type {number} */ at) => {
  const dt = prev === undefined ? 0 : (at - prevAt) / 1000
  // A new generation (a reload) may restart the counters: no rates across it.
  const comparable = prev !== undefined && dt > 0 && prev.generation === s.generation
  const before = new Map(comparable ? prev.keys.map((/** @type {any} */ k) => [k.id, k]) : [])
  let total = 0
  const deltas = new Map()
  for (const k of s.keys) {
    const p = before.get(k.id)
    const dReq = p === undefined ? null : Math.max(0, k.requests - p.requests)
    const dDone = p === undefined ? null : k.successes + k.failures - (p.successes + p.failures)
    const dFail = p === undefined ? null : k.failures - p.failures
    deltas.set(k.id, { dReq, dDone, dFail })
    if (dReq !== null) total += dReq
  }
  push(times, at / 1000)
  push(gaps, comparable ? dt : null)
  const seen = new Set()
  for (const k of s.keys) {
    seen.add(k.id)
    let h = series.get(k.id)
    if (h === undefined) {
      const pad = () => times.slice(0, -1).map(() => null)
      h = {
        rps: pad(),
        err: pad(),
        share: pad(),
        credit: pad(),
        p50: pad(),
        p99: pad(),
        req: pad(),
        done: pad(),
        fail: pad()
      }
      series.set(k.id, h)
    }
    const d = deltas.get(k.id)
    push(h.req, d.dReq)
    push(h.done, d.dDone)
    push(h.fail, d.dFail === null ? null : Math.max(0, d.dFail))
    push(h.rps, d.dReq === null ? null : d.dReq / dt)
    push(h.err, d.dDone === null ? null : d.dDone > 0 ? Math.max(0, d.dFail) / d.dDone : 0)
    push(h.share, d.dReq === null || total === 0 ? null : d.dReq / total)
    push(h.credit, typeof k.credit === "number" ? k.credit : null)
    push(h.p50, k.latencyMs.p50 > 0 ? k.latencyMs.p50 : null)
    push(h.p99, k.latencyMs.p99 > 0 ? k.latencyMs.p99 : null)
  }
  // Keys gone after a reload keep their history but get no new points.
  for (const [id, h] of series) {
    if (seen.has(id)) continue
    if (h.rps.every((v) => v === null)) series.delete(id)
    else for (const arr of Object.values(h)) push(arr, null)
  }
  prev = s
  prevAt = at
}

/** Over the last RATE_N intervals: requests per second, and failures per finished attempt. */
export const windowed = (/** @type {any} */ h) => {
  let req = 0
  let secs = 0
  let done = 0
  let fail = 0
  for (let i = Math.max(0, times.length - RATE_N); i < times.length; i++) {
    if (gaps[i] === null || h.req[i] === null) continue
    req += h.req[i]
    secs += /** @type {number} */ (gaps[i])
    done += h.done[i] ?? 0
    fail += h.fail[i] ?? 0
  }
  return { rps: secs > 0 ? req / secs : null, err: done > 0 ? fail / done : secs > 0 ? 0 : null }
}

/** Credit burn in USD per second over the last TREND_S seconds (negative: credit came back). */
export const burnOf = (/** @type {Array<number|null>} */ credit) => {
  const now = times[times.length - 1]
  let first = -1
  for (let i = times.length - 1; i >= 0 && now - times[i] <= TREND_S; i--) if (credit[i] !== null) first = i
  const end = credit.length - 1
  const from = credit[first]
  const to = credit[end]
  if (first === -1 || first === end || from === null || to === null) return null
  return (from - to) / (now - times[first])
}
