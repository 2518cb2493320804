// The header totals and the key and account tables, updated in place on every sample.
// @ts-check
import { $, clock, colorOf, el, ms, num, pct, span, untilText, usd } from "./format.js"

/** The server's forecast (`/status`): burn over the last minutes, when credit runs out, when it comes back. */
const forecastText = (/** @type {any} */ f) => {
  if (f === undefined || f === null) return ""
  const back = f.resetsAt === null ? "" : ` · back ${untilText(f.resetsAt).replace(/^until /, "")}`
  if (f.burnUsdPerMin <= 1e-12) return `– steady${back}`
  const out = f.exhaustsAt === null ? "" : ` · out in ${span((Date.parse(f.exhaustsAt) - Date.now()) / 1000)}`
  return `▼ ${usd(f.burnUsdPerMin)}/min${out}${back}`
}
import { series, windowed } from "./history.js"
import { sparkline } from "./sparkline.js"

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

export const renderKeys = (/** @type {any} */ s) => {
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
    c.trend.textContent = k.credit === null ? "" : forecastText(k.forecast)
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

/**
 * The account's rate window: what pacing learned (used / limit per length; over a fleet, the whole
 * fleet's limit and how many replicas share it) and whether it is closed now.
 */
const windowText = (/** @type {any} */ w, /** @type {string | null} */ limitedUntil) => {
  const closed = w?.closedUntil ?? limitedUntil
  const state =
    closed !== null && closed !== undefined && Date.parse(closed) > Date.now()
      ? `closed ${untilText(closed)}`
      : "open"
  if (w === null || w === undefined || w.limit === null)
    return limitedUntil !== null ? `rate limited ${untilText(limitedUntil)}` : state
  const per = w.windowMs === null ? "" : ` per ${num(w.windowMs / 1000)} s`
  const fleet = w.fleet === null ? "" : ` (fleet ${w.fleet.limit} ÷ ${w.fleet.replicas})`
  return `${w.used} / ${w.limit}${w.exact ? "" : "~"}${per}${fleet} · ${state}`
}

export const renderAccounts = (/** @type {any} */ s) => {
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
    const row = (s.accounts ?? []).find((/** @type {any} */ a) => a.id === account)
    const forecast = row?.forecast
    const cells = [
      ["account", account],
      ["up", `${up} / ${keys.length}`],
      ["window", windowText(row?.window, limited ? until : null)],
      ["inFlight", String(keys.reduce((n, k) => n + k.inFlight, 0))],
      ["rps", num(rps)],
      ["credit", credits.length === 0 ? "–" : usd(credits.reduce((a, b) => a + b, 0))],
      ["cost", usd(keys.reduce((n, k) => n + k.spendUsd, 0))],
      ["forecast", forecastText(forecast)]
    ]
    cells.forEach(([field, text], i) => {
      const td = el("td", i >= 3 && i < 7 ? "num" : "", text)
      td.dataset.field = field
      tr.append(td)
    })
    body.append(tr)
  }
}

export const renderHeader = (/** @type {any} */ s) => {
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

/** A budget's use this period: spent and held by requests in flight, as a share and a bar. */
const usedCell = (/** @type {any} */ b) => {
  const td = el("td")
  td.dataset.field = "used"
  if (b === null) {
    td.textContent = "–"
    return td
  }
  const share = b.usd > 0 ? Math.min(1, (b.spentUsd + b.reservedUsd) / b.usd) : 1
  td.append(
    el("div", "", `${(share * 100).toFixed(1)}% · ${usd(b.spentUsd)} spent, ${usd(b.reservedUsd)} held`)
  )
  const bar = el("div", "bar")
  const fill = el("div", share >= 1 ? "full" : "")
  fill.style.width = `${share * 100}%`
  bar.append(fill)
  td.append(bar)
  return td
}

/** Named clients (`clients` in the config): usage, budget left and refusals. Hidden when there are none. */
export const renderClients = (/** @type {any} */ s) => {
  const clients = s.clients ?? []
  $("#clients-section").hidden = clients.length === 0
  const body = $("#clients tbody")
  body.replaceChildren()
  for (const c of clients) {
    const tr = el("tr")
    tr.dataset.client = c.id
    const b = c.budget
    const refused = c.refused.budget + c.refused.rate + c.refused.model
    const cells = [
      ["client", c.id],
      [
        "budget",
        b === null
          ? "none"
          : `${usd(b.remainingUsd)} of ${usd(b.usd)} ${b.period} · resets ${untilText(b.resetsAt).replace(/^until /, "")}`
      ],
      ["rpm", c.rpm === null ? "–" : String(c.rpm)],
      ["models", c.models === null ? "any" : c.models.join(", ")],
      ["requests", c.requests.toLocaleString()],
      [
        "refused",
        refused === 0
          ? "0"
          : `${refused} (budget ${c.refused.budget}, rate ${c.refused.rate}, model ${c.refused.model})`
      ],
      ["spend", usd(c.spendUsd)]
    ]
    cells.forEach(([field, text], i) => {
      const td = el("td", i >= 4 ? "num" : "", text)
      td.dataset.field = field
      tr.append(td)
      if (field === "budget") tr.append(usedCell(b))
    })
    body.append(tr)
  }
}
