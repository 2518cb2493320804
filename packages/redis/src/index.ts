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
/**
 * @since 0.3.0
 */
export * as Fleet from "./Fleet.js"
/**
 * @since 0.3.0
 */
export * as FleetCapacity from "./FleetCapacity.js"
/**
 * @since 0.3.0
 */
export * as FleetHealth from "./FleetHealth.js"
/**
 * @since 0.3.0
 */
export * as FleetCredit from "./FleetCredit.js"
/**
 * @since 0.3.0
 */
export * as ClientBudgets from "./ClientBudgets.js"
/**
 * @since 0.4.0
 */
export * as FleetPacing from "./FleetPacing.js"
