/**
 * An external token issuer for tests of Stevedore's `auth.token`: signing
 * keys with certificates made by openssl (self-signed, or a leaf signed by a
 * CA of its own for an `x5c` chain), a minter of JWTs with any header and
 * claims (good ones and every kind of bad one), JWKS documents, and a tiny
 * node:http server that is both the Docker token endpoint
 * (`GET /token?service=…&scope=…`, Basic credentials) and a JWKS URL
 * (`GET /jwks.json`), so skopeo can do the real bearer-token flow.
 */
import { createHmac, createPrivateKey, createPublicKey, randomUUID, type KeyObject } from 'node:crypto'
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { exportJWK, SignJWT, type JWK } from 'jose'
import { libtrustKeyId } from '../../src/auth/keys.js'
import { type Teardown } from './tmp.js'

const run = promisify(execFile)

export type KeyKind = 'ec' | 'rsa'

export interface SigningKey {
  name: string
  alg: 'ES256' | 'RS256'
  privateKey: KeyObject
  publicKey: KeyObject
  /** The private key's PEM file. */
  keyPath: string
  /** PEM of this key's certificate (the leaf, for a CA-signed key). */
  certPath: string
  certPem: string
  /** The `x5c` header: base64 DER, leaf first (then the CA, for a CA-signed key). */
  x5c: string[]
  /** The libtrust key ID of the public key, as Distribution matches `kid` against a bundle. */
  kid: string
}

export interface CertificateAuthority {
  certPath: string
  certPem: string
  keyPath: string
  der: string
}

const newKeyArgs = (kind: KeyKind): string[] =>
  kind === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] : ['-newkey', 'rsa:2048']

const derOf = (pem: string): string => pem.replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, '')

async function signingKey(name: string, kind: KeyKind, keyPath: string, certPath: string, chain: string[] = []): Promise<SigningKey> {
  const privateKey = createPrivateKey(await readFile(keyPath, 'utf8'))
  const publicKey = createPublicKey(privateKey)
  const certPem = await readFile(certPath, 'utf8')
  return {
    name,
    alg: kind === 'ec' ? 'ES256' : 'RS256',
    privateKey,
    publicKey,
    keyPath,
    certPath,
    certPem,
    x5c: [derOf(certPem), ...chain],
    kid: libtrustKeyId(publicKey),
  }
}

/** A key and its self-signed certificate (valid for two days), files in `dir`. */
export async function selfSignedKey(dir: string, name: string, kind: KeyKind = 'ec'): Promise<SigningKey> {
  const keyPath = join(dir, `${name}.key`)
  const certPath = join(dir, `${name}.crt`)
  await run('openssl', ['req', '-x509', ...newKeyArgs(kind), '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/CN=${name}`])
  return signingKey(name, kind, keyPath, certPath)
}

/** A CA certificate (basicConstraints CA:TRUE), for `rootcertbundle`; its leaves sign. */
export async function certificateAuthority(dir: string, name: string): Promise<CertificateAuthority> {
  const keyPath = join(dir, `${name}.key`)
  const certPath = join(dir, `${name}.crt`)
  await run('openssl', [
    'req', '-x509', ...newKeyArgs('ec'), '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ])
  const certPem = await readFile(certPath, 'utf8')
  return { certPath, certPem, keyPath, der: derOf(certPem) }
}

/** A signing key's certificate used as an issuer, whether or not it is a CA (to make chains Distribution refuses). */
export const asIssuer = (key: SigningKey): CertificateAuthority => ({ certPath: key.certPath, certPem: key.certPem, keyPath: key.keyPath, der: key.x5c[0] ?? '' })

/** A key whose certificate `ca` signed; its `x5c` is [leaf, CA]. */
export async function caSignedKey(dir: string, name: string, ca: CertificateAuthority, kind: KeyKind = 'ec'): Promise<SigningKey> {
  const keyPath = join(dir, `${name}.key`)
  const csrPath = join(dir, `${name}.csr`)
  const certPath = join(dir, `${name}.crt`)
  const extPath = join(dir, `${name}.ext`)
  // No keyUsage: only basicConstraints says it may not sign certificates.
  await writeFile(extPath, 'basicConstraints=critical,CA:FALSE\n')
  await run('openssl', ['req', '-new', ...newKeyArgs(kind), '-nodes', '-keyout', keyPath, '-out', csrPath, '-subj', `/CN=${name}`])
  await run('openssl', [
    'x509', '-req', '-in', csrPath, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', `0x${randomUUID().replace(/-/g, '')}`,
    '-days', '2', '-extfile', extPath, '-out', certPath,
  ])
  return signingKey(name, kind, keyPath, certPath, [ca.der])
}

export interface Access {
  type: string
  name: string
  actions: string[]
}

export const pullOf = (name: string): Access => ({ type: 'repository', name, actions: ['pull'] })

export interface Claims {
  issuer?: string
  audience?: string | string[]
  subject?: string
  access?: Access[]
  /** Seconds from now (negative: in the past); null leaves `exp` out. Default 300. */
  expiresIn?: number | null
  /** `nbf`, seconds from now; null leaves it out. Default 0. */
  notBefore?: number | null
  /** Further claims (e.g. groups). */
  extra?: Record<string, unknown>
}

export interface MintOptions extends Claims {
  /** The key that signs. */
  key: SigningKey
  /** How the header names the key: its x5c chain, or `kid` alone. Default x5c. */
  header?: 'x5c' | 'kid'
  /** Instead of `key.kid` (header `kid`). */
  kid?: string
  /** Instead of `key.x5c` (header `x5c`): e.g. another key's chain. */
  x5c?: string[]
}

const seconds = (): number => Math.floor(Date.now() / 1000)

function payloadOf(claims: Claims): Record<string, unknown> {
  const now = seconds()
  const payload: Record<string, unknown> = { ...claims.extra, access: claims.access ?? [], iat: now, jti: randomUUID() }
  if (claims.issuer !== undefined) payload.iss = claims.issuer
  if (claims.audience !== undefined) payload.aud = claims.audience
  if (claims.subject !== undefined) payload.sub = claims.subject
  const exp = claims.expiresIn === undefined ? 300 : claims.expiresIn
  if (exp !== null) payload.exp = now + exp
  const nbf = claims.notBefore === undefined ? 0 : claims.notBefore
  if (nbf !== null) payload.nbf = now + nbf
  return payload
}

/** A JWT signed by `opts.key` with exactly the header and claims asked for. */
export function mint(opts: MintOptions): Promise<string> {
  const header =
    opts.header === 'kid' ? { alg: opts.key.alg, typ: 'JWT', kid: opts.kid ?? opts.key.kid } : { alg: opts.key.alg, typ: 'JWT', x5c: opts.x5c ?? opts.key.x5c }
  return new SignJWT(payloadOf(opts)).setProtectedHeader(header).sign(opts.key.privateKey)
}

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** An unsecured JWT: `alg: none`, empty signature. */
export function unsecuredToken(claims: Claims, kid?: string): string {
  return `${b64url({ alg: 'none', typ: 'JWT', ...(kid === undefined ? {} : { kid }) })}.${b64url(payloadOf(claims))}.`
}

/** Algorithm confusion: HS256 "signed" with a public key's PEM as the HMAC secret, the header naming that key. */
export function hmacWithPublicKey(key: SigningKey, claims: Claims, header: 'x5c' | 'kid'): string {
  const head = header === 'kid' ? { alg: 'HS256', typ: 'JWT', kid: key.kid } : { alg: 'HS256', typ: 'JWT', x5c: key.x5c }
  const input = `${b64url(head)}.${b64url(payloadOf(claims))}`
  const secret = key.publicKey.export({ type: 'spki', format: 'pem' })
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

/** A key's public JWK for a JWKS, named `kid`. */
export async function jwkOf(key: SigningKey, kid: string): Promise<JWK> {
  return { ...(await exportJWK(key.publicKey)), kid, alg: key.alg, use: 'sig' }
}

export interface Signer {
  key: SigningKey
  header: 'x5c' | 'kid'
  /** Header `kid` instead of the libtrust one (e.g. a JWKS entry's). */
  kid?: string
}

export interface JwtIssuerOptions {
  issuer: string
  service: string
  /** username → password; only they get tokens that grant anything. */
  users: Record<string, string>
  signer: Signer
  /** Served at /jwks.json; changeable later. */
  jwks?: JWK[]
}

export interface IssuerRequest {
  path: string
  /** The Basic user; undefined when anonymous. */
  user: string | undefined
  status: number
  scopes: string[]
}

export interface JwtIssuer {
  /** http://127.0.0.1:PORT/token */
  realm: string
  /** http://127.0.0.1:PORT/jwks.json */
  jwksUrl: string
  /** How tokens are signed from now on. */
  signer: Signer
  /** The keys /jwks.json serves from now on. */
  jwks: JWK[]
  requests: IssuerRequest[]
  /** Tokens issued (status 200) to `user`. */
  issued(user: string): number
  close(): Promise<void>
}

/** `repository:team/app:pull,push` or `registry:catalog:*` → an access entry; anything else grants nothing. */
function parseScope(scope: string): Access[] {
  const match = /^(repository|registry):(.+):([a-z*,]+)$/.exec(scope)
  if (match === null) return []
  return [{ type: match[1] ?? '', name: match[2] ?? '', actions: (match[3] ?? '').split(',') }]
}

function basicUser(header: string | undefined): { name: string; password: string } | undefined {
  if (header === undefined || !/^basic /i.test(header)) return undefined
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon < 0 ? { name: decoded, password: '' } : { name: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

function reply(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const bytes = Buffer.from(JSON.stringify(body))
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': bytes.length, ...headers })
  res.end(bytes)
}

/** Starts the token endpoint and JWKS URL on a free loopback port; closed on teardown. */
export async function startJwtIssuer(t: Teardown, opts: JwtIssuerOptions): Promise<JwtIssuer> {
  const requests: IssuerRequest[] = []
  const state = { signer: opts.signer, jwks: opts.jwks ?? [] }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://issuer.invalid')
    const user = basicUser(req.headers.authorization)
    const scopes = url.searchParams.getAll('scope').flatMap(s => s.split(' ')).filter(s => s !== '')
    const record: IssuerRequest = { path: url.pathname, user: user?.name, status: 200, scopes }
    requests.push(record)
    if (req.method === 'GET' && url.pathname === '/jwks.json') return reply(res, 200, { keys: state.jwks })
    if (req.method !== 'GET' || url.pathname !== '/token') {
      record.status = 404
      return reply(res, 404, { errors: [{ code: 'NOT_FOUND' }] })
    }
    if (user !== undefined && opts.users[user.name] !== user.password) {
      record.status = 401
      return reply(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'wrong username or password' }] }, { 'WWW-Authenticate': 'Basic realm="jwt-issuer"' })
    }
    // Anonymous: a valid token granting nothing, as Docker's token servers do.
    const { key, header, kid } = state.signer
    const token = await mint({
      key,
      header,
      ...(kid === undefined ? {} : { kid }),
      issuer: opts.issuer,
      audience: url.searchParams.get('service') ?? '',
      subject: user?.name ?? '',
      access: user === undefined ? [] : scopes.flatMap(parseScope),
    })
    reply(res, 200, { token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() })
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
    jwksUrl: `http://127.0.0.1:${port}/jwks.json`,
    get signer() {
      return state.signer
    },
    set signer(signer: Signer) {
      state.signer = signer
    },
    get jwks() {
      return state.jwks
    },
    set jwks(keys: JWK[]) {
      state.jwks = keys
    },
    requests,
    issued: user => requests.filter(r => r.path === '/token' && r.user === user && r.status === 200).length,
    close,
  }
}
