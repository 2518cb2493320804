// The three uPlot charts: traffic share (stacked), credit with its forecast, latency percentiles.
// uPlot is the page's one global, loaded by its own script tag before this module.
// @ts-check
import { $, colorOf, ms, usd } from "./format.js"
import { burnOf, series, times } from "./history.js"

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

export const renderCharts = (/** @type {Array<string>} */ ids) => {
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
