/**
 * @since 0.1.0
 */
export * as BalancedHttpClient from "./BalancedHttpClient.js"
export * as ChatCompletion from "./ChatCompletion.js"
export * as ErrorMapping from "./ErrorMapping.js"
export * as HttpCreditLookup from "./HttpCreditLookup.js"
export * as OpenRouterClient from "./OpenRouterClient.js"
export * as Protocol from "./Protocol.js"
