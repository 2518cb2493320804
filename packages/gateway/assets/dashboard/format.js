// Formatting and DOM helpers shared by the page's modules.
// @ts-check

export const COLORS = ["#4f9cf9", "#f5a524", "#17c964", "#f31260", "#9353d3", "#06b7db", "#ff7a45", "#a3e635"]

export const $ = (/** @type {string} */ sel) => /** @type {HTMLElement} */ (document.querySelector(sel))
export const el = (/** @type {string} */ tag, /** @type {string} */ cls = "", text = "") => {
  const e = document.createElement(tag)
  if (cls) e.className = cls
  if (text) e.textContent = text
  return e
}
export const colorOf = (/** @type {number} */ i) => COLORS[i % COLORS.length]

export const usd = (/** @type {number|null|undefined} */ v) =>
  v === null || v === undefined
    ? "–"
    : Math.abs(v) >= 100
      ? `$${v.toFixed(0)}`
      : Math.abs(v) >= 1
        ? `$${v.toFixed(2)}`
        : `$${v.toPrecision(3)}`
export const num = (/** @type {number} */ v, digits = 1) => (v >= 100 ? v.toFixed(0) : v.toFixed(digits))
export const pct = (/** @type {number|null} */ v) =>
  v === null ? "–" : `${(v * 100).toFixed(v > 0 && v < 0.1 ? 1 : 0)}%`
export const ms = (/** @type {number} */ v) => (v >= 1000 ? `${(v / 1000).toFixed(2)}s` : `${v.toFixed(0)}ms`)
export const clock = (/** @type {number} */ t) => new Date(t).toLocaleTimeString([], { hour12: false })
export const span = (/** @type {number} */ s) => {
  if (!Number.isFinite(s)) return "never"
  if (s < 60) return `${Math.max(0, Math.round(s))}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`
  return `${(s / 86400).toFixed(1)}d`
}
export const untilText = (/** @type {string|null} */ iso) => {
  if (iso === null) return ""
  const t = Date.parse(iso)
  return `until ${clock(t)} (in ${span((t - Date.now()) / 1000)})`
}
