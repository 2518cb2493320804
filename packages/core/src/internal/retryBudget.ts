/**
 * A retry budget in the manner of Finagle's: retries may be at most `ratio` of the requests seen
 * in the last `windowMs`, plus a floor of `minPerSecond`, so an outage cannot multiply load.
 * Constant memory: one (requests, retries) pair per one-second bucket of the window.
 */
export interface Options {
  readonly ratio: number
  readonly minPerSecond: number
  readonly windowMs: number
}

export interface RetryBudget {
  readonly deposit: (now: number) => void
  readonly tryWithdraw: (now: number) => boolean
}

export const make = (options: Options): RetryBudget => {
  const n = Math.max(1, Math.ceil(options.windowMs / 1000))
  const requests = new Float64Array(n)
  const retries = new Float64Array(n)
  const stamps = new Float64Array(n).fill(-1)
  const slot = (now: number) => {
    const second = Math.floor(now / 1000)
    const i = second % n
    if (stamps[i] !== second) {
      stamps[i] = second
      requests[i] = 0
      retries[i] = 0
    }
    return i
  }
  const sums = (now: number) => {
    const second = Math.floor(now / 1000)
    let req = 0
    let ret = 0
    for (let i = 0; i < n; i++) {
      if (stamps[i]! > second - n) {
        req += requests[i]!
        ret += retries[i]!
      }
    }
    return [req, ret] as const
  }
  return {
    deposit: (now) => {
      requests[slot(now)]!++
    },
    tryWithdraw: (now) => {
      const [req, ret] = sums(now)
      const allowed = options.minPerSecond * n + options.ratio * req
      if (ret + 1 > allowed) return false
      retries[slot(now)]!++
      return true
    }
  }
}
