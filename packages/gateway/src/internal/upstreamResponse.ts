/**
 * An upstream answer as undici's dispatcher delivers it (`upstream.ts`): its head, and its body
 * handed to one reader at a time. In place of Node's `IncomingMessage` (a stream per answer, its
 * listeners added and taken off per request): the body goes to a {@link BodySink}, held back
 * while the answer is paused (the socket stops reading too) or between two readers (`answer.ts`
 * reads a stream's first event, `settle.ts` pipes the rest).
 */
import * as http from "node:http"

/** Who reads the body now. */
export interface BodySink {
  data(chunk: Buffer): void
  end(): void
  error(e: unknown): void
  /** Closed without an error: the gateway itself gave up on the answer (the client left). */
  close(): void
}

/** What the transport underneath does for the answer: stop it (the socket goes), read on. */
export interface Transport {
  abort(e: Error): void
  resume(): void
}

// Node's own rules for a header object made from a raw list (repeats joined, `set-cookie` a list).
const addHeaderLine = (
  http.IncomingMessage.prototype as unknown as {
    _addHeaderLine: (this: object, field: string, value: string, dest: http.IncomingHttpHeaders) => void
  }
)._addHeaderLine
const NODE_RULES = { joinDuplicateHeaders: false }

export class UpstreamResponse {
  /** Node's header object, made on first read (a failure's classification reads it). */
  private headerObject: http.IncomingHttpHeaders | undefined = undefined
  private sink: BodySink | undefined = undefined
  /** Chunks and the end held while paused or between readers. */
  private held: Array<Buffer> | undefined = undefined
  private paused = false
  /** The body came whole from upstream. */
  complete = false
  /** Its end was given to a reader. */
  readableEnded = false
  errored: unknown = null
  destroyed = false
  constructor(
    readonly statusCode: number,
    readonly rawHeaders: ReadonlyArray<string>,
    private readonly transport: Transport
  ) {}

  get headers(): http.IncomingHttpHeaders {
    if (this.headerObject === undefined) {
      const dest: http.IncomingHttpHeaders = {}
      const raw = this.rawHeaders
      for (let i = 0; i < raw.length; i += 2) addHeaderLine.call(NODE_RULES, raw[i]!, raw[i + 1]!, dest)
      this.headerObject = dest
    }
    return this.headerObject
  }

  /** The reader from now on (undefined: none; what comes is held). */
  setSink(sink: BodySink | undefined): void {
    this.sink = sink
  }

  pause(): void {
    this.paused = true
  }

  /** Gives what was held to the reader, then reads on. */
  resume(): void {
    this.paused = false
    const sink = this.sink
    if (sink === undefined || this.destroyed || this.readableEnded) return
    const held = this.held
    if (held !== undefined) {
      this.held = undefined
      for (let i = 0; i < held.length; i++) {
        sink.data(held[i]!)
        // The reader paused again (its client is slow): the rest stays held.
        if (this.paused || this.sink !== sink) {
          this.held = held.slice(i + 1)
          return
        }
      }
    }
    if (this.complete) return this.ended()
    this.transport.resume()
  }

  /** Ends the answer here: the transport's socket is closed. With no error, the reader's `close`. */
  destroy(e?: Error): void {
    if (this.destroyed) return
    this.destroyed = true
    this.held = undefined
    if (!this.complete) this.transport.abort(e ?? new Error("upstream answer closed before its end"))
    const sink = this.sink
    this.sink = undefined
    if (e !== undefined && !this.readableEnded) {
      this.errored = e
      sink?.error(e)
    } else sink?.close()
  }

  // From the transport:

  /** A chunk of the body; false: stop reading the socket until {@link resume}. */
  push(chunk: Buffer): boolean {
    if (this.destroyed) return false
    const sink = this.sink
    if (sink === undefined || this.paused || this.held !== undefined) {
      ;(this.held ??= []).push(chunk)
      return false
    }
    sink.data(chunk)
    return !this.paused
  }

  /** The body's end. */
  finish(): void {
    this.complete = true
    if (this.destroyed || this.sink === undefined || this.paused || this.held !== undefined) return
    this.ended()
  }

  /** The body broke off. */
  fail(e: unknown): void {
    if (this.destroyed || this.readableEnded) return
    this.destroyed = true
    this.errored = e
    this.held = undefined
    const sink = this.sink
    this.sink = undefined
    sink?.error(e)
  }

  private ended(): void {
    this.readableEnded = true
    const sink = this.sink
    this.sink = undefined
    sink?.end()
  }
}
