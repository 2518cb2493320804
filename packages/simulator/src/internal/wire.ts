/** Writing answers: OpenRouter's error body and plain JSON, with exact lengths. */
import type * as http from "node:http"

export type Headers = Record<string, string | number>

export const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

export const bearer = (header: string | undefined): string | undefined => {
  if (header === undefined) return undefined
  return header.length > 7 && header.slice(0, 7).toLowerCase() === "bearer "
    ? header.slice(7).trim()
    : undefined
}

/** `{"error": {code, message, metadata}}`; no metadata at all when there is no `error_type`. */
export const errorBody = (
  status: number,
  message: string,
  errorType: string | undefined,
  metadata?: object
): string =>
  JSON.stringify({
    error:
      errorType === undefined
        ? metadata === undefined
          ? { code: status, message }
          : { code: status, message, metadata }
        : { code: status, message, metadata: { error_type: errorType, ...metadata } }
  })

export const sendJson = (res: http.ServerResponse, status: number, body: string, extra?: Headers): void => {
  const headers: Headers = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body)
  }
  if (extra !== undefined) Object.assign(headers, extra)
  res.writeHead(status, headers)
  res.end(body)
}

export const sendError = (
  res: http.ServerResponse,
  status: number,
  message: string,
  errorType: string | undefined,
  extra?: Headers,
  metadata?: object
): void => sendJson(res, status, errorBody(status, message, errorType, metadata), extra)

export const methodNotAllowed = (res: http.ServerResponse, allow: string): void =>
  sendError(res, 405, "Method Not Allowed", undefined, { allow })

/** Whole seconds until `at`, at least 1: what `Retry-After` carries. */
export const retryAfterSeconds = (at: number, now: number): string =>
  String(Math.max(1, Math.ceil((at - now) / 1000)))
