// The or-balancer status page: polls /status every second, keeps the last minutes of samples in
// this tab (history.js) and draws them (tables.js, charts.js). Plain browser modules with no build
// step. Text is set with textContent only: key ids come from a config file and are never parsed as HTML.
// @ts-check
import { renderCharts } from "./charts.js"
import { $ } from "./format.js"
import { ingest, times } from "./history.js"
import { renderAccounts, renderHeader, renderKeys } from "./tables.js"

const POLL_MS = 1000

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
