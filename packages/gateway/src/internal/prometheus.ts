import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")
const escapeHelp = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
// A name is `[a-zA-Z_:][a-zA-Z0-9_:]*`.
const sanitize = (name: string) => name.replace(/[^a-zA-Z0-9_:]/g, "_").replace(/^([0-9])/, "_$1")

// Tags sorted by name, so the same label set always renders the same way.
const labels = (tags: ReadonlyArray<{ readonly key: string; readonly value: string }>, extra?: string) => {
  const parts = tags.map((t) => `${sanitize(t.key)}="${escapeLabel(t.value)}"`).sort()
  if (extra !== undefined) parts.push(extra)
  return parts.length === 0 ? "" : `{${parts.join(",")}}`
}

const num = (n: number | bigint) =>
  typeof n === "bigint"
    ? n.toString()
    : Number.isFinite(n)
      ? String(n)
      : Number.isNaN(n)
        ? "NaN"
        : n > 0
          ? "+Inf"
          : "-Inf"

/**
 * Renders every metric whose name starts with `prefix` in the Prometheus text exposition format.
 * Labels are the metric's tags (key ids, outcomes): the monitor never tags by secret.
 */
export const render = (prefix: string): Effect.Effect<string> =>
  Effect.map(Metric.snapshot, (pairs) => {
    const byName = new Map<string, Array<MetricPair.MetricPair.Untyped>>()
    for (const pair of pairs) {
      const name = pair.metricKey.name
      if (!name.startsWith(prefix)) continue
      let list = byName.get(name)
      if (list === undefined) byName.set(name, (list = []))
      list.push(pair)
    }
    const out: Array<string> = []
    for (const name of Array.from(byName.keys()).sort()) {
      const list = byName.get(name)!
      const metric = sanitize(name)
      const first = list[0]!
      const description = first.metricKey.description
      const state = first.metricState
      const type = MetricState.isCounterState(state)
        ? "counter"
        : MetricState.isGaugeState(state)
          ? "gauge"
          : MetricState.isHistogramState(state)
            ? "histogram"
            : undefined
      if (type === undefined) continue
      if (description._tag === "Some") out.push(`# HELP ${metric} ${escapeHelp(description.value)}`)
      out.push(`# TYPE ${metric} ${type}`)
      const rows = list
        .map((p) => ({ p, l: labels(p.metricKey.tags) }))
        .sort((a, b) => (a.l < b.l ? -1 : a.l > b.l ? 1 : 0))
      let previous: string | undefined
      for (const { l, p } of rows) {
        // Two metric keys can share a name and tags (a different description or boundaries):
        // a series is written once, from the first.
        if (l === previous) continue
        previous = l
        const s = p.metricState
        const tags = p.metricKey.tags
        if (MetricState.isCounterState(s)) {
          out.push(`${metric}${labels(tags)} ${num(s.count)}`)
        } else if (MetricState.isGaugeState(s)) {
          out.push(`${metric}${labels(tags)} ${num(s.value)}`)
        } else if (MetricState.isHistogramState(s)) {
          // Effect's boundaries end with +Inf already; the `+Inf` bucket is written once, from
          // the count, so a scrape never sees the same series twice.
          for (const [bound, count] of s.buckets) {
            if (!Number.isFinite(bound)) continue
            out.push(`${metric}_bucket${labels(tags, `le="${num(bound)}"`)} ${count}`)
          }
          out.push(`${metric}_bucket${labels(tags, 'le="+Inf"')} ${s.count}`)
          out.push(`${metric}_sum${labels(tags)} ${num(s.sum)}`)
          out.push(`${metric}_count${labels(tags)} ${s.count}`)
        }
      }
    }
    return out.join("\n") + "\n"
  })
