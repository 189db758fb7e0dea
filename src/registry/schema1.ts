/**
 * Docker schema1 signed manifests: libtrust's "pretty JWS"
 * (github.com/docker/libtrust jsonsign.go), as Distribution reads and writes
 * them. The document is the canonical payload cut at `formatLength` (just
 * before its closing brace), then `,"signatures": [...]`, then `}`. Each
 * signature's protected header carries `formatLength` and the base64url
 * `formatTail` so the payload can be put back together; the digest is
 * sha256 of that payload. Output is byte-compatible with libtrust's
 * PrettySignature, which is Go's encoding/json: the JSON here is written by
 * a small Go-compatible encoder, not JSON.stringify.
 */
import { createHash, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { flattenedVerify, FlattenedSign, type JWK } from 'jose';
import { type Digest, digestOf } from './digest.js';
import { RegistryError } from './errors.js';
import { MAX_MANIFEST_SIZE } from './manifest.js';
import { MediaType } from './mediatypes.js';

export interface Schema1Header {
  /** The public key, normalised as libtrust marshals it (sorted members, `kid` computed). */
  jwk?: Record<string, string>;
  alg: string;
  /** Base64 (standard, padded) DER certificates; the first one's key signed. */
  x5c?: string[];
}

export interface Schema1Signature {
  header: Schema1Header;
  /** Base64url signature over `protected + '.' + base64url(payload)`. */
  signature: string;
  /** Base64url JSON: `{"formatLength":…,"formatTail":"…","time":"…"}`. */
  protected: string;
  /** The signature as libtrust's json.Marshal writes it: Distribution 2.0's signature blob. */
  raw: Buffer;
}

export interface SignedSchema1 {
  /** The signed payload; what Distribution stores as the revision blob. */
  canonical: Buffer;
  /** sha256 of `canonical`: the revision digest. */
  digest: Digest;
  signatures: Schema1Signature[];
  /** The payload's indent as libtrust detects it ('' when compact). */
  indent: string;
}

export interface Schema1SigningKey {
  privateJwk: JWK;
  publicJwk: JWK;
}

export const isSchema1Signed = (mediaType: string): boolean => mediaType === MediaType.DockerSchema1Signed;

const SIGNATURE_KEY = 'signatures';
const ALGORITHMS = ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512'];
const CURVES: Record<string, { alg: string; octets: number }> = {
  'P-256': { alg: 'ES256', octets: 32 },
  'P-384': { alg: 'ES384', octets: 48 },
  'P-521': { alg: 'ES512', octets: 66 },
};

const invalid = (message: string): RegistryError => new RegistryError('MANIFEST_INVALID', `manifest invalid: ${message}`);
const unverified = (message: string, detail?: unknown): RegistryError =>
  new RegistryError('MANIFEST_UNVERIFIED', `manifest failed signature verification: ${message}`, { detail });

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Strict base64url without padding, as libtrust's joseBase64UrlDecode accepts it. */
function fromBase64Url(value: string, what: string): Buffer {
  if (!/^[A-Za-z0-9_-]*$/.test(value) || value.length % 4 === 1) throw invalid(`${what} is not base64url`);
  return Buffer.from(value, 'base64url');
}

const toBase64Url = (data: Uint8Array): string => Buffer.from(data).toString('base64url');

function parseJson(data: Buffer, what: string): unknown {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    throw invalid(`${what} is not valid JSON`);
  }
}

// ---- Go's encoding/json, for the values libtrust marshals ----

type GoValue = string | number | GoValue[] | { [key: string]: GoValue };

/** Go's string encoding: HTML-safe, \u00XX for controls other than \n \r \t (Go < 1.22, as Debian's 2.8.2 is built). */
function goString(value: string): string {
  let out = '"';
  for (const ch of value) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || ch === '<' || ch === '>' || ch === '&') out += `\\u00${code.toString(16).padStart(2, '0')}`;
    else if (code === 0x2028 || code === 0x2029) out += `\\u${code.toString(16)}`;
    else if (code >= 0xd800 && code <= 0xdfff) out += '\\ufffd'; // a lone surrogate: invalid UTF-8 to Go
    else out += ch;
  }
  return `${out}"`;
}

/** json.Marshal when `indent` is undefined, else json.MarshalIndent(value, prefix, indent). */
function goJson(value: GoValue, prefix = '', indent?: string, depth = 0): string {
  if (typeof value === 'string') return goString(value);
  if (typeof value === 'number') return String(value);
  const entries: Array<[string | undefined, GoValue]> = Array.isArray(value)
    ? value.map((item) => [undefined, item])
    : Object.entries(value);
  const [open, close] = Array.isArray(value) ? ['[', ']'] : ['{', '}'];
  if (entries.length === 0) return `${open}${close}`;
  const items = entries.map(([key, item]) => {
    const rendered = goJson(item, prefix, indent, depth + 1);
    if (key === undefined) return rendered;
    return `${goString(key)}:${indent === undefined ? '' : ' '}${rendered}`;
  });
  if (indent === undefined) return `${open}${items.join(',')}${close}`;
  const line = (d: number): string => `\n${prefix}${indent.repeat(d)}`;
  return `${open}${items.map((item) => `${line(depth + 1)}${item}`).join(',')}${line(depth)}${close}`;
}

// ---- libtrust keys ----

const trimZeros = (data: Buffer): Buffer => {
  let i = 0;
  while (i < data.length && data[i] === 0) i++;
  return data.subarray(i);
};

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** libtrust's keyIDFromCryptoKey: SHA-256 of the DER SubjectPublicKeyInfo, 240 bits, base32 in groups of four. */
function keyIdOf(jwk: Record<string, string>): string {
  let der: Buffer;
  try {
    der = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
  } catch {
    throw invalid('signature jwk is not a valid public key');
  }
  const bytes = createHash('sha256').update(der).digest().subarray(0, 30);
  let bits = '';
  for (const byte of bytes) bits += byte.toString(2).padStart(8, '0');
  let encoded = '';
  for (let i = 0; i < bits.length; i += 5) encoded += BASE32[parseInt(bits.slice(i, i + 5), 2)];
  return encoded.match(/.{1,4}/g)?.join(':') ?? '';
}

/** The public JWK as libtrust re-marshals it: EC {crv,kid,kty,x,y}, RSA {e,kid,kty,n}; a wrong `kid` is refused. */
export function libtrustJwk(jwk: unknown): Record<string, string> {
  if (!isObject(jwk)) throw invalid('signature jwk is not an object');
  const field = (name: string): string => {
    const value = jwk[name];
    if (typeof value !== 'string') throw invalid(`signature jwk.${name} missing`);
    return value;
  };
  let out: Record<string, string>;
  if (jwk.kty === 'EC') {
    const crv = field('crv');
    const curve = CURVES[crv];
    if (curve === undefined) throw invalid(`signature jwk curve ${crv} unsupported`);
    const x = fromBase64Url(field('x'), 'jwk.x');
    const y = fromBase64Url(field('y'), 'jwk.y');
    if (x.length !== curve.octets || y.length !== curve.octets) throw invalid('signature jwk coordinates have the wrong length');
    const key = { crv, kty: 'EC', x: toBase64Url(x), y: toBase64Url(y) };
    out = { crv, kid: keyIdOf(key), kty: 'EC', x: key.x, y: key.y };
  } else if (jwk.kty === 'RSA') {
    const n = trimZeros(fromBase64Url(field('n'), 'jwk.n'));
    const e = trimZeros(fromBase64Url(field('e'), 'jwk.e'));
    if (e.length === 0 || e.length > 4) throw invalid('signature jwk exponent invalid');
    const key = { e: toBase64Url(e), kty: 'RSA', n: toBase64Url(n) };
    out = { e: key.e, kid: keyIdOf(key), kty: 'RSA', n: key.n };
  } else {
    throw invalid('signature jwk key type unsupported');
  }
  if (jwk.kid !== undefined && jwk.kid !== out.kid) throw invalid('signature jwk kid does not match the key');
  return out;
}

// ---- signatures ----

/** Normalises one signature object the way libtrust's parse-then-marshal does. */
function toSignature(value: unknown, where: string): Schema1Signature {
  if (!isObject(value) || !isObject(value.header)) throw invalid(`${where}.header missing`);
  const { alg, jwk, x5c } = value.header;
  if (typeof alg !== 'string') throw invalid(`${where}.header.alg missing`);
  if (typeof value.signature !== 'string') throw invalid(`${where}.signature missing`);
  if (typeof value.protected !== 'string' || value.protected === '') throw invalid(`${where}.protected missing`);
  const header: Schema1Header = { alg };
  if (jwk !== undefined && jwk !== null) header.jwk = libtrustJwk(jwk);
  if (x5c !== undefined && x5c !== null) {
    if (!Array.isArray(x5c) || !x5c.every((cert): cert is string => typeof cert === 'string')) {
      throw invalid(`${where}.header.x5c is not an array of strings`);
    }
    if (x5c.length > 0) header.x5c = x5c;
  }
  const signature = { header, signature: value.signature, protected: value.protected };
  return { ...signature, raw: Buffer.from(goJson(goValue(signature))) };
}

/** Field order of libtrust's jsSignature/jsHeader structs, `omitempty` honoured. */
function goValue(sig: Pick<Schema1Signature, 'header' | 'signature' | 'protected'>): GoValue {
  const header: Record<string, GoValue> = {};
  if (sig.header.jwk) header.jwk = sig.header.jwk;
  header.alg = sig.header.alg;
  if (sig.header.x5c) header.x5c = sig.header.x5c;
  return { header, signature: sig.signature, protected: sig.protected };
}

/** Parses a stored signature blob (a signature object's JSON). Throws MANIFEST_INVALID. */
export function parseSignature(bytes: Buffer): Schema1Signature {
  return toSignature(parseJson(bytes, 'signature'), 'signature');
}

interface Format {
  formatLength: number;
  formatTail: Buffer;
}

function protectedFormat(sig: Schema1Signature, where: string): Format {
  const header = parseJson(fromBase64Url(sig.protected, `${where}.protected`), `${where}.protected`);
  if (!isObject(header)) throw invalid(`${where}.protected is not an object`);
  const { formatLength, formatTail } = header;
  if (typeof formatLength !== 'number' || !Number.isSafeInteger(formatLength) || formatLength < 0) {
    throw invalid(`${where} has no valid formatLength`);
  }
  if (typeof formatTail !== 'string') throw invalid(`${where} has no formatTail`);
  return { formatLength, formatTail: fromBase64Url(formatTail, `${where}.formatTail`) };
}

const isSpace = (byte: number | undefined): boolean => byte === 0x20 || (byte !== undefined && byte >= 0x09 && byte <= 0x0d);

function lastNonSpace(data: Buffer, end: number): number {
  let i = end - 1;
  while (i >= 0 && isSpace(data[i])) i--;
  return i;
}

/** NewJSONSignature's split: everything up to the last token before the closing brace, and the tail. */
function formatOf(canonical: Buffer): Format {
  const close = lastNonSpace(canonical, canonical.length);
  const last = lastNonSpace(canonical, close);
  if (canonical[close] !== 0x7d || last < 0 || canonical[last] === 0x2c || canonical[last] === 0x7b) {
    throw invalid('schema1 payload must be a non-empty JSON object');
  }
  return { formatLength: last + 1, formatTail: canonical.subarray(last + 1) };
}

/** libtrust's detectJSONIndent: the whitespace between "{\n" and the first quote. */
function detectIndent(payload: Buffer): string {
  if (payload.length <= 2 || payload[0] !== 0x7b || payload[1] !== 0x0a) return '';
  const quote = payload.indexOf(0x22, 1) - 1;
  return quote > 0 ? payload.subarray(2, quote + 1).toString('utf8') : '';
}

/**
 * Parses a pretty JWS document. A document without a `signatures` member is
 * taken as an unsigned payload (what Distribution 2.8 stores) and comes back
 * with no signatures; verifySignatures refuses it.
 */
export function parseSignedManifest(bytes: Buffer): SignedSchema1 {
  if (bytes.byteLength > MAX_MANIFEST_SIZE) throw invalid(`larger than ${MAX_MANIFEST_SIZE} bytes`);
  const doc = parseJson(bytes, 'manifest');
  if (!isObject(doc)) throw invalid('not a JSON object');
  const blocks = doc[SIGNATURE_KEY];
  let canonical = bytes;
  const signatures: Schema1Signature[] = [];
  if (blocks !== undefined) {
    if (!Array.isArray(blocks)) throw invalid('signatures is not an array');
    if (blocks.length === 0) throw unverified('the manifest has no signatures');
    let format: Format | undefined;
    blocks.forEach((block, i) => {
      const sig = toSignature(block, `signatures[${i}]`);
      const own = protectedFormat(sig, `signatures[${i}]`);
      if (format === undefined) format = own;
      else if (format.formatLength !== own.formatLength || !format.formatTail.equals(own.formatTail)) {
        throw invalid(`signatures[${i}] disagrees with signatures[0] on the payload format`);
      }
      signatures.push(sig);
    });
    if (format === undefined || format.formatLength > bytes.length) throw invalid('formatLength beyond the document');
    canonical = Buffer.concat([bytes.subarray(0, format.formatLength), format.formatTail]);
    if (!isObject(parseJson(canonical, 'schema1 payload'))) throw invalid('schema1 payload is not a JSON object');
  } else {
    formatOf(canonical);
  }
  return { canonical, digest: digestOf(canonical), signatures, indent: detectIndent(canonical) };
}

function verificationKey(sig: Schema1Signature): JWK | KeyObject {
  const first = sig.header.x5c?.[0];
  if (first !== undefined) return new X509Certificate(Buffer.from(first, 'base64')).publicKey;
  if (sig.header.jwk !== undefined) return sig.header.jwk;
  throw new Error('no jwk or x5c in the header');
}

/** Verifies every signature over the canonical payload (x5c chains are not checked, as libtrust's Verify). */
export async function verifySignatures(parsed: Pick<SignedSchema1, 'canonical' | 'signatures'>): Promise<void> {
  if (parsed.signatures.length === 0) throw unverified('the manifest has no signatures');
  const payload = toBase64Url(parsed.canonical);
  for (const [index, sig] of parsed.signatures.entries()) {
    const keyId = sig.header.jwk?.kid;
    try {
      if (!ALGORITHMS.includes(sig.header.alg)) throw new Error(`algorithm ${sig.header.alg} unsupported`);
      const jws = { protected: sig.protected, header: { alg: sig.header.alg }, payload, signature: sig.signature };
      await flattenedVerify(jws, verificationKey(sig), { algorithms: [sig.header.alg] });
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw unverified(`signature ${index}${keyId ? ` (key ${keyId})` : ''} is invalid: ${reason}`, { index, keyId });
    }
  }
}

/** libtrust's jsSignaturesSorted: by key ID, then by signature. */
function compareSignatures(a: Schema1Signature, b: Schema1Signature): number {
  const [ka, kb] = [a.header.jwk?.kid ?? '', b.header.jwk?.kid ?? ''];
  if (ka !== kb) return ka < kb ? -1 : 1;
  if (a.signature !== b.signature) return a.signature < b.signature ? -1 : 1;
  return Buffer.compare(a.raw, b.raw);
}

/** libtrust's PrettySignature over `canonical` with every given signature, duplicates dropped. */
export function buildPrettySignature(canonical: Buffer, signatures: Schema1Signature[]): Buffer {
  const { formatLength, formatTail } = formatOf(canonical);
  const unique = new Map<string, Schema1Signature>();
  for (const [i, sig] of signatures.entries()) {
    const own = protectedFormat(sig, `signatures[${i}]`);
    if (own.formatLength !== formatLength || !own.formatTail.equals(formatTail)) {
      throw invalid(`signatures[${i}] was made over a differently formatted payload`);
    }
    unique.set(sig.raw.toString('latin1'), sig);
  }
  if (unique.size === 0) throw unverified('no signatures to attach');
  const sorted = [...unique.values()].sort(compareSignatures).map(goValue);
  const indent = detectIndent(canonical);
  const tail = indent
    ? `,\n${indent}${goString(SIGNATURE_KEY)}: ${goJson(sorted, indent, indent)}\n}`
    : `,${goString(SIGNATURE_KEY)}:${goJson(sorted)}}`;
  return Buffer.concat([canonical.subarray(0, formatLength), Buffer.from(tail)]);
}

/** RFC 3339 in UTC without fractions, as Go's time.RFC3339 prints it. */
const rfc3339 = (date: Date): string => `${date.toISOString().slice(0, 19)}Z`;

/** Signs `canonical` as libtrust's JSONSignature.Sign does (EC keys by their curve, RSA with RS256). */
export async function signCanonical(canonical: Buffer, key: Schema1SigningKey, options: { now?: Date } = {}): Promise<Schema1Signature> {
  const { formatLength, formatTail } = formatOf(canonical);
  const jwk = libtrustJwk(key.publicJwk);
  const alg = jwk.kty === 'EC' ? (CURVES[jwk.crv ?? '']?.alg ?? 'ES256') : 'RS256';
  const protectedHeader = { formatLength, formatTail: toBase64Url(formatTail), time: rfc3339(options.now ?? new Date()) };
  const jws = await new FlattenedSign(canonical)
    .setProtectedHeader(protectedHeader)
    .setUnprotectedHeader({ alg })
    .sign(key.privateJwk);
  if (jws.protected === undefined) throw new Error('jose produced no protected header');
  return toSignature({ header: { jwk, alg }, signature: jws.signature, protected: jws.protected }, 'signature');
}
