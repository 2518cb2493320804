/**
 * @since 0.1.0
 */
export * as CapacityLeases from "./CapacityLeases.js"
/**
 * @since 0.1.0
 */
export * as LeaseKeeper from "./LeaseKeeper.js"
/**
 * @since 0.1.0
 */
export * as RedisStore from "./RedisStore.js"
/**
 * @since 0.1.0
 */
export * as RedisUnavailable from "./RedisUnavailable.js"
/**
 * @since 0.1.0
 */
export * as SharedHealth from "./SharedHealth.js"
