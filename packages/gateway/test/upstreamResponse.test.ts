/**
 * An upstream answer as undici delivers it (upstreamResponse.ts): the header object made by Node's
 * own rules, the body handed to one reader at a time with nothing lost, repeated or reordered
 * across pauses and hand-overs, and the ways it ends (its end, an error, the gateway giving up).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import fc from "fast-check"
import * as http from "node:http"
import * as net from "node:net"
import { type BodySink, type Transport, UpstreamResponse } from "../src/internal/upstreamResponse.js"

/** A transport that records what the answer asked of it. */
const recorder = () => {
  const log: Array<string> = []
  const transport: Transport = {
    abort: (e) => log.push(`abort:${e.message}`),
    resume: () => log.push("resume")
  }
  return { log, transport }
}

/** A sink that records what it was given, by name. */
const sinkNamed = (name: string, out: Array<string>): BodySink => ({
  data: (chunk) => out.push(`${name}:data:${chunk.toString()}`),
  end: () => out.push(`${name}:end`),
  error: (e) => out.push(`${name}:error:${(e as Error).message}`),
  close: () => out.push(`${name}:close`)
})

/** Node's own header object for a raw head sent over a socket, and its raw list. */
const nodeHeaders = (rawHead: string) =>
  Effect.promise(
    () =>
      new Promise<{ headers: http.IncomingHttpHeaders; raw: Array<string> }>((resolve, reject) => {
        const server = net.createServer((socket) => {
          socket.once("data", () => socket.end(`HTTP/1.1 200 OK\r\n${rawHead}content-length: 0\r\n\r\n`))
        })
        server.listen(0, "127.0.0.1", () => {
          const { port } = server.address() as net.AddressInfo
          http
            .get({ host: "127.0.0.1", port, path: "/", agent: false }, (res) => {
              res.resume()
              resolve({ headers: res.headers, raw: res.rawHeaders })
              server.close()
            })
            .on("error", reject)
        })
      })
  )

describe("UpstreamResponse", () => {
  it.effect(
    "its header object is Node's for the same raw list: repeats joined, set-cookie a list, first of a single kept",
    () =>
      Effect.gen(function* () {
        const heads = [
          "Content-Type: application/json\r\nX-Generation-Id: gen-1\r\n",
          "Set-Cookie: a=1\r\nset-cookie: b=2\r\nX-Thing: one\r\nx-thing: two\r\n",
          "Content-Type: text/plain\r\ncontent-type: text/html\r\nAge: 1\r\nage: 2\r\n",
          "Cookie: a=1\r\nCOOKIE: b=2\r\nX-RateLimit-Limit: 10\r\nx-ratelimit-limit: 20\r\n",
          "Authorization: x\r\nauthorization: y\r\nFrom: a\r\nfrom: b\r\nVia: 1.1 a\r\nvia: 1.1 b\r\n"
        ]
        for (const head of heads) {
          const node = yield* nodeHeaders(head)
          const answer = new UpstreamResponse(200, node.raw, recorder().transport)
          assert.deepStrictEqual(answer.headers, node.headers, head)
          // Made once.
          assert.strictEqual(answer.headers, answer.headers)
        }
      })
  )

  it("hands the body to its reader; paused, it holds chunks and the end, and stops the socket", () => {
    const { log, transport } = recorder()
    const out: Array<string> = []
    const answer = new UpstreamResponse(200, [], transport)
    answer.setSink(sinkNamed("a", out))
    assert.isTrue(answer.push(Buffer.from("1")))
    answer.pause()
    assert.isFalse(answer.push(Buffer.from("2")), "paused: the socket stops reading")
    answer.finish()
    assert.deepStrictEqual(out, ["a:data:1"])
    assert.isFalse(answer.readableEnded)
    // Handed to another reader, then read on: what was held, then the end, and no socket resume
    // (the body is complete).
    answer.setSink(sinkNamed("b", out))
    answer.resume()
    assert.deepStrictEqual(out, ["a:data:1", "b:data:2", "b:end"])
    assert.isTrue(answer.readableEnded)
    assert.deepStrictEqual(log, [])
  })

  it("a reader that pauses again while held chunks are given keeps the rest held", () => {
    const { log, transport } = recorder()
    const out: Array<string> = []
    const answer = new UpstreamResponse(200, [], transport)
    answer.pause()
    for (const c of ["1", "2", "3"]) answer.push(Buffer.from(c))
    let n = 0
    const slow: BodySink = {
      ...sinkNamed("s", out),
      data: (chunk) => {
        out.push(`s:data:${chunk.toString()}`)
        if (++n === 1) answer.pause()
      }
    }
    answer.setSink(slow)
    answer.resume()
    assert.deepStrictEqual(out, ["s:data:1"])
    assert.deepStrictEqual(log, [], "the socket stays stopped")
    answer.resume()
    assert.deepStrictEqual(out, ["s:data:1", "s:data:2", "s:data:3"])
    assert.deepStrictEqual(log, ["resume"], "then the socket reads on")
  })

  it("destroyed with an error before its end: the reader's error once, the call aborted with it", () => {
    const { log, transport } = recorder()
    const out: Array<string> = []
    const answer = new UpstreamResponse(200, [], transport)
    answer.setSink(sinkNamed("a", out))
    answer.destroy(new Error("upstream timed out"))
    answer.destroy(new Error("again"))
    answer.push(Buffer.from("late"))
    answer.fail(new Error("late failure"))
    assert.deepStrictEqual(out, ["a:error:upstream timed out"])
    assert.deepStrictEqual(log, ["abort:upstream timed out"])
    assert.strictEqual((answer.errored as Error).message, "upstream timed out")
  })

  it("destroyed with no error (the gateway gave up): the reader's close, the call aborted", () => {
    const { log, transport } = recorder()
    const out: Array<string> = []
    const answer = new UpstreamResponse(200, [], transport)
    answer.setSink(sinkNamed("a", out))
    answer.destroy()
    assert.deepStrictEqual(out, ["a:close"])
    assert.strictEqual(log.length, 1)
    assert.match(log[0]!, /^abort:/)
    assert.strictEqual(answer.errored, null)
  })

  it("destroyed after its body came whole: nothing to abort", () => {
    const { log, transport } = recorder()
    const answer = new UpstreamResponse(200, [], transport)
    answer.pause()
    answer.push(Buffer.from("x"))
    answer.finish()
    answer.destroy()
    assert.deepStrictEqual(log, [])
  })

  it("an error while no one reads it is kept for the next reader", () => {
    const { transport } = recorder()
    const answer = new UpstreamResponse(200, [], transport)
    answer.pause()
    answer.push(Buffer.from("x"))
    answer.fail(new Error("socket hang up"))
    assert.strictEqual((answer.errored as Error).message, "socket hang up")
    assert.isTrue(answer.destroyed)
  })

  // Any schedule of chunks, pauses, resumes and hand-overs between readers: the readers together get
  // every chunk once, in order, then the end once, and only after every chunk; the socket is asked
  // to read on only when nothing is held.
  it("property: no chunk lost, repeated or reordered across pauses and hand-overs; the end once, last", () => {
    type Op =
      | { readonly _tag: "push" }
      | { readonly _tag: "pause" }
      | { readonly _tag: "resume" }
      | { readonly _tag: "sink"; readonly name: string | undefined }
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.constant<Op>({ _tag: "push" }),
      fc.constant<Op>({ _tag: "pause" }),
      fc.constant<Op>({ _tag: "resume" }),
      fc.constantFrom<Op>(
        { _tag: "sink", name: "a" },
        { _tag: "sink", name: "b" },
        { _tag: "sink", name: undefined }
      )
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), fc.boolean(), (ops, finishEarly) => {
        const got: Array<string> = []
        let ends = 0
        let pushed = 0
        const sinkOf = (): BodySink => ({
          data: (c) => {
            assert.strictEqual(ends, 0, "no data after the end")
            got.push(c.toString())
          },
          end: () => ends++,
          error: () => assert.fail("no error"),
          close: () => assert.fail("no close")
        })
        const answer = new UpstreamResponse(200, [], {
          abort: () => assert.fail("no abort"),
          resume: () => {}
        })
        const run = (o: Op) => {
          if (o._tag === "push") answer.push(Buffer.from(String(pushed++)))
          else if (o._tag === "pause") answer.pause()
          else if (o._tag === "resume") answer.resume()
          else answer.setSink(o.name === undefined ? undefined : sinkOf())
        }
        const cut = finishEarly ? Math.floor(ops.length / 2) : ops.length
        ops.slice(0, cut).forEach(run)
        answer.finish()
        // After the end no more chunks come from the socket: the rest of the schedule without pushes.
        ops
          .slice(cut)
          .filter((o) => o._tag !== "push")
          .forEach(run)
        // Finally read out by a reader.
        answer.setSink(sinkOf())
        answer.resume()
        assert.deepStrictEqual(
          got,
          Array.from({ length: pushed }, (_, i) => String(i))
        )
        assert.strictEqual(ends, 1)
        assert.isTrue(answer.readableEnded)
      }),
      { numRuns: 500 }
    )
  })
})
