// What a request in flight is expected to cost, learned from the answers (Threshold's default
// `estimate`): an EWMA-max per model in integer nano-dollars. A cost above the estimate raises it
// at once (so a cap is never undershot by a request dearer than the last ones), a cheaper one pulls
// it down by a sixteenth of the gap per answer; equal costs give that cost exactly.

/** How far each cheaper answer pulls the estimate towards its cost: 1 / DECAY of the gap. */
const DECAY = 16
/** Models remembered (callers name them): past this, the first seen is forgotten. */
const MODELS = 4096

export class CostEstimates {
  private readonly byModel = new Map<string, number>()
  /** Over every model: what a model not answered yet is expected to cost. */
  private any: number | undefined

  /** `prior`: nano-dollars reserved before any answer named its cost. */
  constructor(private readonly prior: number) {}

  /** Nano-dollars to reserve for a request for `model`. */
  of(model: string | undefined): number {
    const m = this.byModel.get(model ?? "")
    return m !== undefined ? m : (this.any ?? this.prior)
  }

  /** An answer for `model` cost `cost` nano-dollars. */
  learn(model: string | undefined, cost: number): void {
    const id = model ?? ""
    const current = this.byModel.get(id)
    if (current === undefined && this.byModel.size >= MODELS) {
      this.byModel.delete(this.byModel.keys().next().value!)
    }
    // Steady prices (nearly always) change nothing: no write.
    if (current !== cost) this.byModel.set(id, next(current, cost))
    if (this.any !== cost) this.any = next(this.any, cost)
  }
}

const next = (current: number | undefined, cost: number): number =>
  current === undefined || cost >= current ? cost : current - Math.floor((current - cost) / DECAY)
