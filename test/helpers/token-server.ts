/**
 * A Docker token server (the realm of Distribution's `auth: token` mode) for
 * tests: `GET /token?service=…&scope=repository:<name>:<actions>` with
 * optional Basic auth. Valid users get what their scopes ask for, anonymous
 * requests get a token granting nothing, wrong credentials get 401.
 *
 * Tokens are ES256 JWTs signed with a fresh self-signed P-256 certificate
 * made by openssl; the JWT header carries that certificate in `x5c`, so
 * Distribution configured with `rootcertbundle: <certPath>` accepts them.
 * Every request is recorded, to count how many tokens a client asked for.
 */
import { execFile } from 'node:child_process'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { importPKCS8, SignJWT } from 'jose'
import { tempDir, type Teardown } from './tmp.js'

export interface TokenServerOptions {
  service: string
  issuer: string
  /** username → password */
  users: Record<string, string>
  /** Lifetime of the tokens, in seconds (`expires_in` and `exp - iat`); default 300. Changeable later. */
  expiresIn?: number
}

export interface TokenRequestRecord {
  /** The Basic user, undefined when anonymous. */
  user: string | undefined
  /** 200, or 401 for wrong credentials. */
  status: number
  service: string | null
  scopes: string[]
  /** Date.now() when served. */
  at: number
}

export interface TokenServer {
  /** http://127.0.0.1:PORT/token, for `auth.token.realm` */
  realm: string
  /** PEM certificate, for `auth.token.rootcertbundle` */
  certPath: string
  requests: TokenRequestRecord[]
  /** Token requests served (status 200) to `user`. */
  count(user: string): number
  /** Lifetime of tokens issued from now on, in seconds. */
  expiresIn: number
  close(): Promise<void>
}

interface Access {
  type: string
  name: string
  actions: string[]
}

const run = promisify(execFile)

export async function startTokenServer(t: Teardown, opts: TokenServerOptions): Promise<TokenServer> {
  const dir = await tempDir(t, 'token-server')
  const keyPath = join(dir, 'key.pem')
  const certPath = join(dir, 'cert.pem')
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=stevedore-test-token-issuer',
  ])
  const key = await importPKCS8(await readFile(keyPath, 'utf8'), 'ES256')
  const certDer = (await readFile(certPath, 'utf8')).replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, '')

  const requests: TokenRequestRecord[] = []
  const state = { expiresIn: opts.expiresIn ?? 300 }

  // issued_at keeps milliseconds (clients may shorten a lifetime by it); exp rounds up, so
  // exp >= issued_at + expires_in and a client that honours expires_in never sends an expired token.
  const sign = async (subject: string, access: Access[]): Promise<{ token: string; issuedAt: number }> => {
    const issuedAt = Date.now()
    const iat = Math.floor(issuedAt / 1000)
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT', x5c: [certDer] })
      .setIssuer(opts.issuer)
      .setSubject(subject)
      .setAudience(opts.service)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(Math.ceil(issuedAt / 1000 + state.expiresIn))
      .setJti(randomUUID())
      .sign(key)
    return { token, issuedAt }
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://token.invalid')
    if (req.method !== 'GET' || url.pathname !== '/token') return reply(res, 404, { errors: [{ code: 'NOT_FOUND' }] })
    const user = basicUser(req.headers.authorization)
    const scopes = url.searchParams.getAll('scope').flatMap(s => s.split(' ')).filter(s => s !== '')
    const record: TokenRequestRecord = { user: user?.name, status: 200, service: url.searchParams.get('service'), scopes, at: Date.now() }
    requests.push(record)
    if (user !== undefined && opts.users[user.name] !== user.password) {
      record.status = 401
      res.setHeader('WWW-Authenticate', 'Basic realm="test-token"')
      return reply(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'wrong username or password' }] })
    }
    // Anonymous: a valid token that grants nothing, as Docker's token servers do.
    const access = user === undefined ? [] : scopes.flatMap(parseScope)
    const { token, issuedAt } = await sign(user?.name ?? '', access)
    reply(res, 200, { token, access_token: token, expires_in: state.expiresIn, issued_at: new Date(issuedAt).toISOString() })
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => reply(res, 500, { errors: [{ code: 'UNKNOWN', message: String(err) }] }))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const close = (): Promise<void> =>
    new Promise(resolve => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  t.teardown(close)
  const { port } = server.address() as AddressInfo
  return {
    realm: `http://127.0.0.1:${port}/token`,
    certPath,
    requests,
    count: user => requests.filter(r => r.user === user && r.status === 200).length,
    get expiresIn() {
      return state.expiresIn
    },
    set expiresIn(seconds: number) {
      state.expiresIn = seconds
    },
    close,
  }
}

/** `repository:team/app:pull,push` → one access entry; anything else grants nothing. */
function parseScope(scope: string): Access[] {
  const match = /^(repository):(.+):([a-z*,]+)$/.exec(scope)
  if (match === null) return []
  return [{ type: match[1] ?? '', name: match[2] ?? '', actions: (match[3] ?? '').split(',') }]
}

function basicUser(header: string | undefined): { name: string; password: string } | undefined {
  if (header === undefined || !/^basic /i.test(header)) return undefined
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon < 0 ? { name: decoded, password: '' } : { name: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(JSON.stringify(body))
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': bytes.length })
  res.end(bytes)
}
