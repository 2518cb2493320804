/**
 * @since 0.1.0
 */
export * as Balancer from "./Balancer.js"
export * as CreditLookup from "./CreditLookup.js"
export * as Key from "./Key.js"
export * as KeyPool from "./KeyPool.js"
export * as KeySelector from "./KeySelector.js"
export * as Monitor from "./Monitor.js"
export * as StateStore from "./StateStore.js"
export * as UpstreamError from "./UpstreamError.js"
