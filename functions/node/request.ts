/**
 * A web `Request` over a node:http `IncomingMessage`, made lazily (helper of server.ts).
 *
 * Most gateway requests only read the method, the URL and a few headers. A platform `Request`
 * is costly to build when it carries an abort signal (undici links the signal with a
 * finalization registry), so `method`, `url`, `headers` and `signal` are answered here, and
 * the platform `Request` (with the body stream) is built only when anything else is used (body,
 * `json()`, `clone()`…). The object's prototype chain includes `Request.prototype`, so
 * `instanceof Request` holds.
 */
import type { IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'

const kIn = Symbol('incoming')
const kUrl = Symbol('url')
const kHeaders = Symbol('headers')
const kAbort = Symbol('abort')
const kGone = Symbol('gone')
const kReal = Symbol('request')

interface LazyRequest {
  [kIn]: IncomingMessage
  [kUrl]: string
  [kHeaders]: Headers | undefined
  [kAbort]: AbortController | undefined
  [kGone]: boolean
  [kReal]: Request | undefined
}

function headersOf(self: LazyRequest): Headers {
  let h = self[kHeaders]
  if (!h) {
    h = new Headers()
    const raw = self[kIn].rawHeaders
    for (let i = 0; i < raw.length; i += 2) h.append(raw[i]!, raw[i + 1]!)
    self[kHeaders] = h
  }
  return h
}

function signalOf(self: LazyRequest): AbortSignal {
  let ac = self[kAbort]
  if (!ac) {
    ac = self[kAbort] = new AbortController()
    if (self[kGone]) ac.abort()
  }
  return ac.signal
}

function realOf(self: LazyRequest): Request {
  let r = self[kReal]
  if (!r) {
    const req = self[kIn]
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD'
    r = self[kReal] = new Request(self[kUrl], {
      method: req.method,
      headers: headersOf(self),
      signal: signalOf(self),
      ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: 'half' } : {}),
    } as RequestInit)
  }
  return r
}

const proto: object = Object.create(Request.prototype, {
  method: {
    get(this: LazyRequest) {
      return this[kIn].method ?? 'GET'
    },
  },
  url: {
    get(this: LazyRequest) {
      return this[kUrl]
    },
  },
  headers: {
    get(this: LazyRequest) {
      return headersOf(this)
    },
  },
  signal: {
    get(this: LazyRequest) {
      return signalOf(this)
    },
  },
})
for (const key of Reflect.ownKeys(Request.prototype)) {
  if (key === 'constructor' || key === Symbol.toStringTag || Object.prototype.hasOwnProperty.call(proto, key)) continue
  const d = Object.getOwnPropertyDescriptor(Request.prototype, key)!
  if (d.get) {
    Object.defineProperty(proto, key, {
      get(this: LazyRequest) {
        return Reflect.get(realOf(this), key)
      },
    })
  } else if (typeof d.value === 'function') {
    const fn = d.value as (...args: unknown[]) => unknown
    Object.defineProperty(proto, key, {
      value(this: LazyRequest, ...args: unknown[]) {
        return fn.apply(realOf(this), args)
      },
    })
  }
}

/** The Host header from the raw pairs (no parsed-headers object needed). */
function hostOf(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!
    if (k.length === 4 && k.toLowerCase() === 'host') return raw[i + 1]
  }
  return undefined
}

/** The request as a web `Request`; see {@link abortIncoming}. */
export function incomingRequest(req: IncomingMessage): Request {
  const self: LazyRequest = Object.create(proto)
  self[kIn] = req
  self[kUrl] = `http://${hostOf(req) ?? 'localhost'}${req.url}`
  self[kHeaders] = undefined
  self[kAbort] = undefined
  self[kGone] = false
  self[kReal] = undefined
  return self as unknown as Request
}

/** The client went: the request's `signal` aborts (or is aborted when first read). */
export function abortIncoming(request: Request): void {
  const self = request as unknown as LazyRequest
  self[kGone] = true
  self[kAbort]?.abort()
}
