/**
 * @since 0.1.0
 */
export * as AccountPacing from "./AccountPacing.js"
export * as ByModel from "./ByModel.js"
export * as Capacity from "./Capacity.js"
export * as ConcurrencyLimited from "./ConcurrencyLimited.js"
export * as CreditAware from "./CreditAware.js"
export * as CreditLedger from "./CreditLedger.js"
export * as HealthAware from "./HealthAware.js"
export * as HealthShare from "./HealthShare.js"
export * as LeastBusy from "./LeastBusy.js"
export * as PacingShare from "./PacingShare.js"
export * as Random from "./Random.js"
export * as RoundRobin from "./RoundRobin.js"
export * as Sticky from "./Sticky.js"
export * as Threshold from "./Threshold.js"
export * as Weighted from "./Weighted.js"
export * as WeightedRandom from "./WeightedRandom.js"
