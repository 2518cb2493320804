/**
 * Redis key names. All of one balancer key's state shares the hash tag `{or-balancer:<keyId>}`,
 * so every script touching it runs on one Cluster slot. Key ids are labels or fingerprints,
 * never secrets.
 */
const tag = (keyId: string) => `{or-balancer:${keyId}}`

export const permits = (keyId: string) => `${tag(keyId)}:permits`
export const credit = (keyId: string) => `${tag(keyId)}:credit`
export const creditLock = (keyId: string) => `${tag(keyId)}:credit-lock`
export const health = (keyId: string) => `${tag(keyId)}:health`
export const probe = (keyId: string) => `${tag(keyId)}:probe`
export const creditInfo = (keyId: string) => `${tag(keyId)}:credit-info`
/** Accounts out of credit over the fleet: one small hash (field per account name), on one slot. */
export const accountsOut = "{or-balancer:accounts}:out"
/** Learned rate windows and the replicas pacing by them: one hash tag, so one script reads both. */
export const pacingWindows = "{or-balancer:pacing}:windows"
export const pacingReplicas = "{or-balancer:pacing}:replicas"
