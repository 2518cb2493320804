/**
 * @since 0.1.0
 */
export * as Cli from "./Cli.js"
export * as Gateway from "./Gateway.js"
export * as GatewayConfig from "./GatewayConfig.js"
export * as Tracing from "./Tracing.js"
