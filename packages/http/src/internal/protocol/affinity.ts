/**
 * The affinity id a request carries for sticky routing: `session_id`, else `prompt_cache_key`,
 * else `user`. An empty string is no id (it would pin every such request to one key).
 */
export const affinityOf = (request: {
  readonly session_id?: unknown
  readonly prompt_cache_key?: unknown
  readonly user?: unknown
}): string | undefined => {
  const s = request.session_id
  if (typeof s === "string" && s !== "") return s
  const p = request.prompt_cache_key
  if (typeof p === "string" && p !== "") return p
  const u = request.user
  if (typeof u === "string" && u !== "") return u
  return undefined
}
