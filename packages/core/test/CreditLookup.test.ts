import { describe, expect, it } from "@effect/vitest"
import { CreditLookup } from "@or-balancer/core"

const at = (iso: string) => Date.parse(iso)

describe("CreditLookup periods (OpenRouter's limit_reset, UTC calendar)", () => {
  it("daily: from UTC midnight to the next", () => {
    expect(CreditLookup.periodStart("daily", at("2026-11-25T23:59:59.999Z"))).toBe(at("2026-11-25T00:00:00Z"))
    expect(CreditLookup.nextReset("daily", at("2026-11-25T00:00:00Z"))).toBe(at("2026-11-26T00:00:00Z"))
  })

  it("weekly: from Monday's midnight; a Sunday still belongs to the week before", () => {
    // 2026-11-25 is a Wednesday; 2026-11-29 a Sunday; 2026-11-30 a Monday.
    expect(CreditLookup.periodStart("weekly", at("2026-11-25T12:00:00Z"))).toBe(at("2026-11-23T00:00:00Z"))
    expect(CreditLookup.periodStart("weekly", at("2026-11-29T23:00:00Z"))).toBe(at("2026-11-23T00:00:00Z"))
    expect(CreditLookup.periodStart("weekly", at("2026-11-30T00:00:00Z"))).toBe(at("2026-11-30T00:00:00Z"))
    expect(CreditLookup.nextReset("weekly", at("2026-11-29T23:00:00Z"))).toBe(at("2026-11-30T00:00:00Z"))
  })

  it("monthly: from the 1st, across month lengths and the year's end", () => {
    expect(CreditLookup.periodStart("monthly", at("2026-02-28T10:00:00Z"))).toBe(at("2026-02-01T00:00:00Z"))
    expect(CreditLookup.nextReset("monthly", at("2026-02-28T10:00:00Z"))).toBe(at("2026-03-01T00:00:00Z"))
    expect(CreditLookup.nextReset("monthly", at("2026-12-31T23:59:59Z"))).toBe(at("2027-01-01T00:00:00Z"))
  })
})
