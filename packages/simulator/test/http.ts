/** Plain `fetch` helpers for the simulator's tests: every answer read whole, JSON when it parses. */
import * as Effect from "effect/Effect"
import type * as Simulator from "../src/Simulator.js"

export interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  readonly json: any
}

export const request = (url: string, init: RequestInit = {}): Effect.Effect<Answer> =>
  Effect.promise(async () => {
    const res = await fetch(url, init)
    const text = await res.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { status: res.status, headers: res.headers, text, json }
  })

export const post = (sim: Simulator.Handle, path: string, key: string, body: unknown) =>
  request(`${sim.baseUrl}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(body)
  })

export const get = (sim: Simulator.Handle, path: string, key?: string) =>
  request(`${sim.baseUrl}${path}`, key === undefined ? {} : { headers: { authorization: `Bearer ${key}` } })

/** The `data:` payloads of an SSE body, skipping comments; `[DONE]` kept as a string. */
export const sseData = (text: string): Array<any> =>
  text
    .split("\n\n")
    .flatMap((event) => event.split("\n").filter((line) => line.startsWith("data: ")))
    .map((line) => line.slice(6))
    .map((d) => (d === "[DONE]" ? d : JSON.parse(d)))
