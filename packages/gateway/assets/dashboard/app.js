// The or-balancer status page: polls /status every second, keeps the last minutes of samples in
// this tab and draws them. Plain browser JS with no build step; uPlot (served beside it) draws
// the charts, small canvases the sparklines. Text is set with textContent only: key ids come
// from a config file and are never parsed as HTML.
// @ts-check
/* global uPlot */
;(() => {
  "use strict"
  const POLL_MS = 1000
  const KEEP = 300 // samples: five minutes at one a second
  const SPARK = 60 // samples a sparkline shows
  const TREND_S = 60 // seconds of history behind a credit trend
  const RATE_N = 5 // samples behind the request and error rates shown as numbers
  const COLORS = ["#4f9cf9", "#f5a524", "#17c964", "#f31260", "#9353d3", "#06b7db", "#ff7a45", "#a3e635"]

  /** @type {Array<number>} sample times, epoch seconds */
  const times = []
  /** @type {Array<number|null>} seconds since the previous sample (null: no comparable previous one) */
  const gaps = []
  /**
   * Per key id: arrays aligned with `times` (null where the key had no value); `req`, `done` and
   * `fail` are the counts that arrived in each interval.
   * @typedef {Array<number|null>} Col
   * @type {Map<string, {rps: Col, err: Col, share: Col, credit: Col, p50: Col, p99: Col, req: Col, done: Col, fail: Col}>}
   */
  const series = new Map()
  /** @type {any} the previous /status answer, for per-second deltas */
  let prev
  let prevAt = 0

  const $ = (/** @type {string} */ sel) => /** @type {HTMLElement} */ (document.querySelector(sel))
  const el = (/** @type {string} */ tag, /** @type {string} */ cls = "", text = "") => {
    const e = document.createElement(tag)
    if (cls) e.className = cls
    if (text) e.textContent = text
    return e
  }
  const colorOf = (/** @type {number} */ i) => COLORS[i % COLORS.length]

  // --- formatting ------------------------------------------------------------------------------

  const usd = (/** @type {number|null|undefined} */ v) =>
    v === null || v === undefined
      ? "–"
      : Math.abs(v) >= 100
        ? `$${v.toFixed(0)}`
        : Math.abs(v) >= 1
          ? `$${v.toFixed(2)}`
          : `$${v.toPrecision(3)}`
  const num = (/** @type {number} */ v, digits = 1) => (v >= 100 ? v.toFixed(0) : v.toFixed(digits))
  const pct = (/** @type {number|null} */ v) =>
    v === null ? "–" : `${(v * 100).toFixed(v > 0 && v < 0.1 ? 1 : 0)}%`
  const ms = (/** @type {number} */ v) => (v >= 1000 ? `${(v / 1000).toFixed(2)}s` : `${v.toFixed(0)}ms`)
  const clock = (/** @type {number} */ t) => new Date(t).toLocaleTimeString([], { hour12: false })
  const span = (/** @type {number} */ s) => {
    if (!Number.isFinite(s)) return "never"
    if (s < 60) return `${Math.max(0, Math.round(s))}s`
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`
    return `${(s / 86400).toFixed(1)}d`
  }
  const untilText = (/** @type {string|null} */ iso) => {
    if (iso === null) return ""
    const t = Date.parse(iso)
    return `until ${clock(t)} (in ${span((t - Date.now()) / 1000)})`
  }

  // --- history ---------------------------------------------------------------------------------

  const push = (/** @type {Array<any>} */ arr, /** @type {any} */ v) => {
    arr.push(v)
    if (arr.length > KEEP) arr.shift()
  }

  /** Records one /status answer as rates over the time since the previous one. */
  const ingest = (/** @type {any} */ s, /** @type {number} */ at) => {
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
  const windowed = (/** @type {any} */ h) => {
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
  const burnOf = (/** @type {Array<number|null>} */ credit) => {
    const now = times[times.length - 1]
    let first = -1
    for (let i = times.length - 1; i >= 0 && now - times[i] <= TREND_S; i--) if (credit[i] !== null) first = i
    const end = credit.length - 1
    const from = credit[first]
    const to = credit[end]
    if (first === -1 || first === end || from === null || to === null) return null
    return (from - to) / (now - times[first])
  }

  // --- sparklines ------------------------------------------------------------------------------

  const sparkline = (
    /** @type {HTMLCanvasElement} */ c,
    /** @type {Array<number|null>} */ data,
    /** @type {string} */ color,
    max0 = 0
  ) => {
    const dpr = window.devicePixelRatio || 1
    const w = c.clientWidth || 110
    const h = c.clientHeight || 26
    if (c.width !== w * dpr) c.width = w * dpr
    if (c.height !== h * dpr) c.height = h * dpr
    const g = /** @type {CanvasRenderingContext2D} */ (c.getContext("2d"))
    g.setTransform(dpr, 0, 0, dpr, 0, 0)
    g.clearRect(0, 0, w, h)
    const pts = data.slice(-SPARK)
    const max = Math.max(max0, ...pts.map((v) => v ?? 0)) || 1
    const x = (/** @type {number} */ i) =>
      (i / (SPARK - 1)) * (w - 2) + 1 + (SPARK - pts.length) * ((w - 2) / (SPARK - 1))
    const y = (/** @type {number} */ v) => h - 2 - (v / max) * (h - 4)
    g.strokeStyle = "rgba(154,164,178,0.25)"
    g.beginPath()
    g.moveTo(0, h - 1.5)
    g.lineTo(w, h - 1.5)
    g.stroke()
    g.beginPath()
    let started = false
    pts.forEach((v, i) => {
      const yy = y(v ?? 0)
      if (!started) g.moveTo(x(i), yy)
      else g.lineTo(x(i), yy)
      started = true
    })
    g.strokeStyle = color
    g.lineWidth = 1.5
    g.stroke()
    if (pts.length > 1) {
      g.lineTo(x(pts.length - 1), h)
      g.lineTo(x(0), h)
      g.closePath()
      g.globalAlpha = 0.18
      g.fillStyle = color
      g.fill()
      g.globalAlpha = 1
    }
  }

  // --- tables ----------------------------------------------------------------------------------

  /** @type {Map<string, Record<string, HTMLElement>>} */
  const rows = new Map()

  const keyRow = (/** @type {string} */ id, /** @type {number} */ i) => {
    const tr = el("tr")
    tr.dataset.key = id
    /** @type {Record<string, HTMLElement>} */
    const cells = {}
    const cell = (/** @type {string} */ field, cls = "") => {
      const td = el("td", cls)
      td.dataset.field = field
      tr.append(td)
      cells[field] = td
      return td
    }
    const name = cell("id")
    const swatch = el("span", "swatch")
    swatch.style.background = colorOf(i)
    cells.name = el("span", "", id)
    cells.sub = el("div", "muted small")
    name.append(swatch, cells.name, cells.sub)
    const state = cell("state")
    cells.pill = el("span", "pill")
    cells.stateDetail = el("div", "muted small")
    state.append(cells.pill, cells.stateDetail)
    const inflight = cell("inFlight")
    cells.inflightText = el("span")
    cells.bar = el("div", "bar")
    cells.barFill = el("div")
    cells.bar.append(cells.barFill)
    inflight.append(cells.inflightText, cells.bar)
    const credit = cell("credit")
    cells.creditText = el("span")
    cells.trend = el("div", "muted small")
    cells.trend.dataset.field = "creditTrend"
    credit.append(cells.creditText, cells.trend)
    for (const [field, color] of [
      ["rps", colorOf(i)],
      ["errorRate", "#f31260"]
    ]) {
      const td = cell(field, "sparkcell")
      cells[`${field}Text`] = el("span", "sparkvalue")
      const canvas = /** @type {HTMLCanvasElement} */ (el("canvas", "spark"))
      canvas.dataset.color = color
      cells[`${field}Canvas`] = canvas
      td.append(cells[`${field}Text`], canvas)
    }
    cell("requests", "num")
    cell("latency", "num")
    cell("cost", "num")
    $("#keys tbody").append(tr)
    rows.set(id, cells)
    return cells
  }

  const renderKeys = (/** @type {any} */ s) => {
    const ids = new Set(s.keys.map((/** @type {any} */ k) => k.id))
    for (const [id] of rows) {
      if (ids.has(id)) continue
      document.querySelector(`tr[data-key="${CSS.escape(id)}"]`)?.remove()
      rows.delete(id)
    }
    s.keys.forEach((/** @type {any} */ k, /** @type {number} */ i) => {
      const c = rows.get(k.id) ?? keyRow(k.id, i)
      const h = /** @type {any} */ (series.get(k.id))
      c.sub.textContent = `${k.account ?? "no account"} · weight ${k.weight}`
      c.pill.textContent = k.health
      c.pill.className = `pill ${k.health}`
      c.stateDetail.textContent =
        k.health === "ejected"
          ? `${k.reason ?? "failures"} · ${untilText(k.coolingUntil)}`
          : k.health === "cooling"
            ? untilText(k.coolingUntil)
            : k.health === "half-open"
              ? "next request is a trial"
              : k.creditError !== null
                ? `credit lookup: ${k.creditError}`
                : ""
      const cap = k.maxConcurrency
      c.inflightText.textContent = cap === null ? `${k.inFlight}` : `${k.inFlight} / ${cap}`
      c.bar.hidden = cap === null
      c.barFill.style.width = cap === null ? "0" : `${Math.min(100, (k.inFlight / cap) * 100)}%`
      c.barFill.className = cap !== null && k.inFlight >= cap ? "full" : ""
      c.creditText.textContent =
        k.credit === null ? (k.creditError === null ? "–" : "lookup failed") : usd(k.credit)
      const burn = burnOf(h.credit)
      c.trend.textContent =
        burn === null || k.credit === null
          ? ""
          : burn > 1e-9
            ? `▼ ${usd(burn * 60)}/min · out in ${span(k.credit / burn)}`
            : burn < -1e-9
              ? `▲ ${usd(-burn * 60)}/min`
              : "– steady"
      const rates = windowed(h)
      c.rpsText.textContent = rates.rps === null ? "–" : num(rates.rps)
      c.errorRateText.textContent = pct(rates.err)
      sparkline(/** @type {HTMLCanvasElement} */ (c.rpsCanvas), h.rps, colorOf(i))
      sparkline(/** @type {HTMLCanvasElement} */ (c.errorRateCanvas), h.err, "#f31260", 0.05)
      c.requests.textContent = k.requests.toLocaleString()
      c.latency.textContent = k.latencyMs.p50 > 0 ? `${ms(k.latencyMs.p50)} / ${ms(k.latencyMs.p99)}` : "–"
      c.cost.textContent = usd(k.spendUsd)
    })
  }

  const renderAccounts = (/** @type {any} */ s) => {
    /** @type {Map<string, Array<any>>} */
    const groups = new Map()
    for (const k of s.keys) {
      const a = k.account ?? "(none)"
      groups.set(a, [...(groups.get(a) ?? []), k])
    }
    const body = $("#accounts tbody")
    body.replaceChildren()
    for (const [account, keys] of groups) {
      const tr = el("tr")
      tr.dataset.account = account
      const up = keys.filter((k) => k.health === "healthy" || k.health === "half-open").length
      // An account-wide 429 takes out every key of the account: cooling (the balancer's Retry-After)
      // or ejected by the health-aware strategy with a RateLimited reason.
      const limited = keys.every(
        (k) => k.coolingUntil !== null && (k.health === "cooling" || /^RateLimited/.test(k.reason ?? ""))
      )
      // Open again when its first key is back.
      const until = limited ? keys.map((k) => k.coolingUntil).sort()[0] : null
      const rps = keys.reduce((n, k) => n + (windowed(series.get(k.id)).rps ?? 0), 0)
      const credits = keys.map((k) => k.credit).filter((c) => typeof c === "number")
      const cells = [
        ["account", account],
        ["up", `${up} / ${keys.length}`],
        ["window", limited ? `rate limited ${untilText(until)}` : "open"],
        ["inFlight", String(keys.reduce((n, k) => n + k.inFlight, 0))],
        ["rps", num(rps)],
        ["credit", credits.length === 0 ? "–" : usd(credits.reduce((a, b) => a + b, 0))],
        ["cost", usd(keys.reduce((n, k) => n + k.spendUsd, 0))]
      ]
      cells.forEach(([field, text], i) => {
        const td = el("td", i >= 3 ? "num" : "", text)
        td.dataset.field = field
        tr.append(td)
      })
      body.append(tr)
    }
  }

  const renderHeader = (/** @type {any} */ s) => {
    const state = $("#state")
    state.textContent = `${s.status} · generation ${s.generation}`
    state.className = `pill ${s.status === "ok" ? "healthy" : "cooling"}`
    $("#strategy").textContent = s.strategy.join(" → ")
    $("#updated").textContent = `updated ${clock(Date.now())}`
    const t = s.totals
    const credits = s.keys
      .map((/** @type {any} */ k) => k.credit)
      .filter((/** @type {any} */ c) => typeof c === "number")
    /** @type {Record<string, string>} */
    const values = {
      requests: t.requests.toLocaleString(),
      rps: num(
        s.keys.reduce(
          (/** @type {number} */ n, /** @type {any} */ k) => n + (windowed(series.get(k.id)).rps ?? 0),
          0
        )
      ),
      failures: t.failures.toLocaleString(),
      retries: t.retries.toLocaleString(),
      inFlight: String(s.inFlightRequests),
      spend: usd(t.spendUsd),
      credit:
        credits.length === 0
          ? "–"
          : usd(credits.reduce((/** @type {number} */ a, /** @type {number} */ b) => a + b, 0))
    }
    for (const [name, text] of Object.entries(values)) $(`[data-total="${name}"]`).textContent = text
  }

  // --- charts ----------------------------------------------------------------------------------

  /** @type {Record<string, any>} */
  const charts = {}
  let chartKeys = ""

  const axes = (/** @type {(v: number) => string} */ fmt) => [
    { stroke: "#9aa4b2", grid: { stroke: "#232a36" }, ticks: { stroke: "#232a36" } },
    {
      stroke: "#9aa4b2",
      grid: { stroke: "#232a36" },
      ticks: { stroke: "#232a36" },
      size: 56,
      values: (/** @type {any} */ _u, /** @type {Array<number>} */ vs) => vs.map(fmt)
    }
  ]

  const makeChart = (
    /** @type {string} */ id,
    /** @type {Array<any>} */ lines,
    /** @type {any} */ extra = {}
  ) => {
    const target = $(id)
    target.replaceChildren()
    const opts = {
      width: Math.max(240, target.clientWidth),
      height: 220,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      series: [{}, ...lines],
      ...extra
    }
    return new uPlot(opts, [[], ...lines.map(() => [])], target)
  }

  const buildCharts = (/** @type {Array<string>} */ ids) => {
    // Traffic share is drawn stacked: series are cumulative and the widest is drawn first.
    charts.share = makeChart(
      "#chart-share",
      [...ids]
        .map((id, i) => ({
          label: id,
          stroke: colorOf(i),
          fill: colorOf(i),
          width: 1,
          points: { show: false }
        }))
        .reverse(),
      { axes: axes((v) => `${v}%`), scales: { y: { range: [0, 100] } } }
    )
    charts.credit = makeChart(
      "#chart-credit",
      ids.map((id, i) => ({ label: id, stroke: colorOf(i), width: 2, points: { show: false } })),
      {
        axes: axes((v) => usd(v)),
        // Room on the right for the forecast, drawn by the hook below.
        scales: {
          x: {
            time: true,
            range: (/** @type {any} */ _u, /** @type {number} */ min, /** @type {number} */ max) => [
              min,
              max + horizon
            ]
          },
          // Down to where the forecasts end, so they are seen whole.
          y: {
            range: (/** @type {any} */ _u, /** @type {number} */ min, /** @type {number} */ max) => {
              for (const [, credit, burn] of forecasts)
                min = Math.min(min, Math.max(0, credit - burn * horizon))
              const pad = Math.max((max - min) * 0.08, Math.abs(max) * 0.01, 0.01)
              return [Math.max(0, min - pad), max + pad]
            }
          }
        },
        hooks: { draw: [drawForecast] }
      }
    )
    charts.latency = makeChart(
      "#chart-latency",
      ids.flatMap((id, i) => [
        { label: `${id} p50`, stroke: colorOf(i), width: 2, points: { show: false } },
        { label: `${id} p99`, stroke: colorOf(i), width: 1, dash: [6, 4], points: { show: false } }
      ]),
      { axes: axes((v) => ms(v)) }
    )
  }

  /** Seconds of future the credit chart shows, and each key's line into it: `[colour index, credit, burn/s]`. */
  let horizon = 0
  /** @type {Array<[number, number, number]>} */
  let forecasts = []

  /** Dashed lines from each key's credit now, at its current burn, to zero or the chart's edge. */
  const drawForecast = (/** @type {any} */ u) => {
    const now = times[times.length - 1]
    if (now === undefined || forecasts.length === 0) return
    const g = u.ctx
    const { left, top, width, height } = u.bbox
    g.save()
    g.beginPath()
    g.rect(left, top, width, height)
    g.clip()
    const nowX = u.valToPos(now, "x", true)
    g.strokeStyle = "rgba(154,164,178,0.35)"
    g.setLineDash([2, 3])
    g.beginPath()
    g.moveTo(nowX, top)
    g.lineTo(nowX, top + height)
    g.stroke()
    g.setLineDash([5, 4])
    g.lineWidth = 1.5 * (window.devicePixelRatio || 1)
    for (const [i, credit, burn] of forecasts) {
      const end = Math.min(now + horizon, now + credit / burn)
      g.strokeStyle = colorOf(i)
      g.beginPath()
      g.moveTo(nowX, u.valToPos(credit, "y", true))
      g.lineTo(u.valToPos(end, "x", true), u.valToPos(credit - burn * (end - now), "y", true))
      g.stroke()
    }
    g.restore()
  }

  const renderCharts = (/** @type {Array<string>} */ ids) => {
    if (ids.join("\n") !== chartKeys) {
      chartKeys = ids.join("\n")
      buildCharts(ids)
    }
    const x = times.slice()
    const cumulative = []
    let acc = x.map(() => 0)
    for (const id of ids) {
      const share = /** @type {any} */ (series.get(id)).share
      acc = acc.map((a, i) => a + (share[i] ?? 0) * 100)
      cumulative.push(acc.map((a, i) => (share[i] === null ? null : a)))
    }
    charts.share.setData([x, ...cumulative.reverse()])
    // The forecast looks a third as far ahead as the history goes back.
    horizon = Math.max(2, (x[x.length - 1] - x[0]) / 3)
    forecasts = []
    ids.forEach((id, i) => {
      const credit = /** @type {any} */ (series.get(id)).credit
      const now = credit[credit.length - 1]
      const burn = burnOf(credit)
      if (now !== null && burn !== null && burn > 1e-9) forecasts.push([i, now, burn])
    })
    charts.credit.setData([x, ...ids.map((id) => /** @type {any} */ (series.get(id)).credit.slice())])
    charts.latency.setData([
      x,
      ...ids.flatMap((id) => {
        const h = /** @type {any} */ (series.get(id))
        return [h.p50.slice(), h.p99.slice()]
      })
    ])
  }

  window.addEventListener("resize", () => {
    for (const [name, chart] of Object.entries(charts)) {
      const target = $(`#chart-${name}`)
      chart.setSize({ width: Math.max(240, target.clientWidth), height: 220 })
    }
  })

  // --- polling ---------------------------------------------------------------------------------

  const problem = (/** @type {string} */ text) => {
    const state = $("#state")
    state.textContent = text
    state.className = "pill ejected"
  }

  const poll = async () => {
    let wait = POLL_MS
    try {
      const r = await fetch("status", { cache: "no-store", credentials: "same-origin" })
      if (r.status === 401) {
        problem("signed out: open /dashboard?token=…")
        wait = 5 * POLL_MS
      } else if (!r.ok) {
        problem(`/status answered ${r.status}`)
      } else {
        const s = await r.json()
        ingest(s, Date.now())
        renderHeader(s)
        renderKeys(s)
        renderAccounts(s)
        renderCharts(s.keys.map((/** @type {any} */ k) => k.id))
        document.body.dataset.samples = String(times.length)
      }
    } catch {
      problem("gateway unreachable")
    }
    setTimeout(poll, wait)
  }
  poll()
})()
