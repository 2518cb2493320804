/**
 * A small incremental Server-Sent Events parser: fed text in arbitrary pieces (a line, an event,
 * or a split in the middle of `\r\n`), it yields whole events. Comment lines (`:` keep-alives)
 * are skipped. Per the spec, an event is dispatched on a blank line; an unterminated one at the
 * end of the stream is dropped.
 */
import * as Stream from "effect/Stream"

export interface Event {
  readonly event: string | undefined
  readonly data: string
  readonly id: string | undefined
}

export interface Parser {
  readonly feed: (text: string) => Array<Event>
  readonly end: () => Array<Event>
}

export const makeParser = (): Parser => {
  let buffer = ""
  // A `\r` ended the last piece: a `\n` starting the next one belongs to the same line break.
  let skipLf = false
  let data: Array<string> | undefined
  let event: string | undefined
  let id: string | undefined

  const line = (text: string, out: Array<Event>) => {
    if (text === "") {
      if (data !== undefined) out.push({ event, data: data.join("\n"), id })
      data = undefined
      event = undefined
      return
    }
    if (text.charCodeAt(0) === 58 /* : */) return
    const colon = text.indexOf(":")
    const field = colon === -1 ? text : text.slice(0, colon)
    let value = colon === -1 ? "" : text.slice(colon + 1)
    if (value.charCodeAt(0) === 32 /* space */) value = value.slice(1)
    switch (field) {
      case "data":
        ;(data ??= []).push(value)
        break
      case "event":
        event = value
        break
      case "id":
        id = value
        break
      default:
        // `retry` and unknown fields: nothing a client of this API needs.
        break
    }
  }

  const feed = (text: string): Array<Event> => {
    const out: Array<Event> = []
    let start = 0
    let i = 0
    if (skipLf && text.charCodeAt(0) === 10) {
      start = 1
      i = 1
    }
    skipLf = false
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i)
      if (c !== 10 && c !== 13) continue
      line(buffer + text.slice(start, i), out)
      buffer = ""
      if (c === 13) {
        if (i + 1 < text.length) {
          if (text.charCodeAt(i + 1) === 10) i++
        } else {
          skipLf = true
        }
      }
      start = i + 1
    }
    buffer += text.slice(start)
    return out
  }

  const end = (): Array<Event> => {
    buffer = ""
    data = undefined
    return []
  }

  return { feed, end }
}

/** Bytes to events; UTF-8 characters split across pieces are decoded whole. */
export const events = <E, R>(bytes: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Event, E, R> =>
  Stream.suspend(() => {
    const parser = makeParser()
    const decoder = new TextDecoder()
    return bytes.pipe(
      Stream.mapConcat((chunk) => parser.feed(decoder.decode(chunk, { stream: true }))),
      Stream.concat(
        Stream.suspend(() => Stream.fromIterable([...parser.feed(decoder.decode()), ...parser.end()]))
      )
    )
  })
