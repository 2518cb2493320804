/**
 * Secret scrubbing. Every OpenRouter key starts `sk-or-` (core's `Key` refuses anything else), so
 * a key is found by its shape, whole, `Bearer `-prefixed or URL-encoded (`sk-or-` stays as is under
 * `encodeURIComponent`; a stricter encoder writes `sk%2Dor%2D`), and cut down to `sk-or-…`.
 * Finding keys by shape needs no list of secrets, so it costs one native search per text or chunk.
 */

/** Characters a key (or its URL-encoded form) is made of: the run after the prefix is cut whole. */
const isKeyChar = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) || // 0-9
  (c >= 0x41 && c <= 0x5a) || // A-Z
  (c >= 0x61 && c <= 0x7a) || // a-z
  c === 0x2d || // -
  c === 0x5f || // _
  c === 0x2e || // .
  c === 0x25 // %

const KEY_LIKE = /sk(?:-|%2[dD])or(?:-|%2[dD])[A-Za-z0-9_\-.%]*/g

/** Whether a text may hold a key (a cheap test before the replacement). */
export const mayHoldKey = (text: string): boolean => text.includes("sk-or-") || text.includes("sk%2")

/** Anything that looks like an OpenRouter key is cut out, in case an upstream ever echoes one. */
export const scrub = (text: string): string => (mayHoldKey(text) ? text.replace(KEY_LIKE, "sk-or-…") : text)

/** `scrub` for a header value, whose mask must be ASCII (an HTTP header cannot carry `…`). */
export const scrubHeader = (value: string): string =>
  mayHoldKey(value) ? value.replace(KEY_LIKE, "sk-or-***") : value

// Byte needles for Node's `Buffer`; made on first use, so importing this module needs no `Buffer`
// (the text functions above work on any platform).
let needles: { readonly prefix: Buffer; readonly encoded: Buffer; readonly mask: Buffer } | undefined
const bytes = () =>
  (needles ??= { prefix: Buffer.from("sk-or-"), encoded: Buffer.from("sk%2"), mask: Buffer.from("sk-or-…") })

/** Where a key-like run starting at `at` ends, or -1 when `at` does not start a key prefix. */
const keyAt = (buf: Buffer, at: number): number => {
  let i: number
  if (buf[at + 2] === 0x2d) {
    i = at + 6 // sk-or-
  } else {
    // sk%2Dor%2D, either case of the hex digit
    const d1 = buf[at + 4]
    const d2 = buf[at + 9]
    if (
      (d1 !== 0x44 && d1 !== 0x64) ||
      buf[at + 5] !== 0x6f ||
      buf[at + 6] !== 0x72 ||
      buf[at + 7] !== 0x25 ||
      buf[at + 8] !== 0x32 ||
      (d2 !== 0x44 && d2 !== 0x64)
    )
      return -1
    i = at + 10
  }
  while (i < buf.length && isKeyChar(buf[i]!)) i++
  return i
}

const nextHit = (buf: Buffer, from: number): number => {
  const n = bytes()
  const a = buf.indexOf(n.prefix, from)
  const b = buf.indexOf(n.encoded, from)
  return a === -1 ? b : b === -1 ? a : Math.min(a, b)
}

/** `scrub` on bytes: the same buffer when nothing matched (the common case allocates nothing). */
export const scrubBytes = (buf: Buffer): Buffer => {
  let hit = nextHit(buf, 0)
  if (hit === -1) return buf
  const parts: Array<Buffer> = []
  let from = 0
  while (hit !== -1) {
    const end = keyAt(buf, hit)
    if (end === -1) {
      hit = nextHit(buf, hit + 1)
      continue
    }
    parts.push(buf.subarray(from, hit), bytes().mask)
    from = end
    hit = nextHit(buf, end)
  }
  parts.push(buf.subarray(from))
  return Buffer.concat(parts)
}

/** A key is at most this long; a longer run of key characters is let through scrubbed. */
const MAX_HELD = 4096

/**
 * Scrubs a stream chunk by chunk, a key split across chunks included: the trailing run of key
 * characters of each chunk (which may be the start of a key) is held back until a character that
 * cannot be part of a key arrives. SSE events end with a blank line, so nothing is held between
 * events and no event is delayed.
 */
export interface StreamScrubber {
  /** The bytes safe to send now (possibly empty). */
  readonly push: (chunk: Buffer) => Buffer
  /** What is still held, scrubbed, at the end of the stream. */
  readonly end: () => Buffer
}

export const makeStreamScrubber = (): StreamScrubber => {
  let held: Buffer | undefined
  return {
    push: (chunk) => {
      const buf = held === undefined ? chunk : Buffer.concat([held, chunk])
      held = undefined
      let cut = buf.length
      while (cut > 0 && isKeyChar(buf[cut - 1]!)) cut--
      if (cut < buf.length && buf.length - cut <= MAX_HELD) {
        held = buf.subarray(cut)
        return scrubBytes(buf.subarray(0, cut))
      }
      return scrubBytes(buf)
    },
    end: () => {
      const rest = held === undefined ? Buffer.alloc(0) : scrubBytes(held)
      held = undefined
      return rest
    }
  }
}
