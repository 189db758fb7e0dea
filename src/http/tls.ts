/**
 * TLS for the inbound server: the secure context built from http.tls, the
 * client-certificate check for verify-client-cert-if-given, a plain answer to
 * plain HTTP on the TLS port, and certificate reloads that drop nothing.
 */
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { Server } from 'node:http';
import { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { createSecureContext, TLSSocket, type PeerCertificate, type SecureContextOptions, type TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { TlsConfig } from '../config/types.js';

/** The bytes of http.tls's files. */
interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  ca: Buffer[];
}

/** A file of http.tls that cannot be used, named in the message. */
export class TlsFileError extends Error {
  readonly code = 'STEVEDORE_TLS_FILE';
  constructor(message: string, options?: { cause: unknown }) {
    super(message, options);
  }
}

function readTlsFilesSync(tls: TlsConfig): TlsFiles {
  const read = (path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new TlsFileError(`${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  return { cert: read(tls.certificate), key: read(tls.key), ca: tls.clientCas.map(read) };
}

async function readTlsFiles(tls: TlsConfig): Promise<TlsFiles> {
  const read = (path: string): Promise<Buffer> =>
    readFile(path).catch((err: unknown) => {
      throw new TlsFileError(`${path}: ${(err as Error).message}`, { cause: err });
    });
  const [cert, key, ...ca] = await Promise.all([read(tls.certificate), read(tls.key), ...tls.clientCas.map(read)]);
  return { cert: cert as Buffer, key: key as Buffer, ca };
}

function parseCertificate(path: string, pem: Buffer): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new TlsFileError(`${path}: not a PEM certificate (${(err as Error).message})`, { cause: err });
  }
}

/**
 * The secure context options for `files`, checked first: OpenSSL's own errors
 * do not say which file is wrong, and a CA file without a certificate in it
 * is silently ignored by createSecureContext.
 */
function contextOptions(tls: TlsConfig, files: TlsFiles): SecureContextOptions {
  const certificate = parseCertificate(tls.certificate, files.cert);
  let key;
  try {
    key = createPrivateKey(files.key);
  } catch (err) {
    throw new TlsFileError(`${tls.key}: not a PEM private key (${(err as Error).message})`, { cause: err });
  }
  if (!certificate.checkPrivateKey(key)) throw new TlsFileError(`${tls.key}: the key does not match the certificate in ${tls.certificate}`);
  files.ca.forEach((pem, i) => parseCertificate(tls.clientCas[i] ?? '', pem));
  // setSecureContext replaces every option it is not given: minVersion goes with each new context.
  const options: SecureContextOptions = { cert: files.cert, key: files.key, minVersion: tls.minimumTls, ...(files.ca.length > 0 ? { ca: files.ca } : {}) };
  try {
    createSecureContext(options);
  } catch (err) {
    throw new TlsFileError(`${tls.certificate}, ${tls.key}: ${(err as Error).message}`, { cause: err });
  }
  return options;
}

/** The https.createServer options for http.tls, files read now; throws a TlsFileError naming a bad file. */
export function tlsServerOptions(tls: TlsConfig): TlsOptions {
  const options: TlsOptions = contextOptions(tls, readTlsFilesSync(tls));
  if (tls.clientCas.length === 0) return options;
  // verify-client-cert-if-given lets an unverified certificate through the
  // handshake (Go's VerifyClientCertIfGiven refuses it there; Node cannot
  // tell "none" from "bad" before the handshake ends): unverifiedClientCertificate
  // refuses its requests.
  return { ...options, requestCert: true, rejectUnauthorized: tls.clientAuth === 'require-and-verify-client-cert' };
}

const peerChecks = new WeakMap<TLSSocket, string | null>();

/**
 * Why the client certificate on `socket` is not trusted, when it presented one
 * that did not verify; undefined for plain sockets, verified certificates and
 * no certificate at all (OpenSSL then reports UNABLE_TO_GET_ISSUER_CERT, so
 * authorized alone cannot tell the two apart). Computed once per connection.
 */
export function unverifiedClientCertificate(socket: Socket): string | undefined {
  if (!(socket instanceof TLSSocket) || socket.authorized) return undefined;
  let reason = peerChecks.get(socket);
  if (reason === undefined) {
    const peer: Partial<PeerCertificate> = socket.getPeerCertificate();
    reason = peer.subject === undefined ? null : String(socket.authorizationError ?? 'unknown error');
    peerChecks.set(socket, reason);
  }
  return reason ?? undefined;
}

const PLAIN_HTTP_BODY = 'Client sent an HTTP request to an HTTPS server.\n';
const PLAIN_HTTP_ANSWER =
  'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n' +
  `Content-Length: ${Buffer.byteLength(PLAIN_HTTP_BODY)}\r\nConnection: close\r\n\r\n${PLAIN_HTTP_BODY}`;
/** An HTTP request starts with its method; a TLS connection with a handshake record, 0x16. */
const isLetter = (byte: number): boolean => (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);

/**
 * Answers plain HTTP on the TLS port with 400 and the text Go's net/http
 * sends, instead of the TLS alert a browser or curl shows as garbage (or a
 * hang). The first byte of each connection decides: a TLS handshake goes on
 * to the server's own TLS listener (the byte is unshifted, and Node's TLS
 * wrap reads what the socket buffered before it), an ASCII letter is an HTTP
 * method. A connection that sends nothing for `idleMs` is dropped, and one
 * that has sent nothing yet counts as idle for closeIdleConnections, so a
 * drain does not wait for it.
 */
export function refusePlainHttp(server: HttpsServer, idleMs: number): void {
  const tlsListeners = server.listeners('connection') as ((this: HttpsServer, socket: Socket) => void)[];
  server.removeAllListeners('connection');
  const silent = new Set<Socket>();
  server.on('connection', function peek(this: HttpsServer, socket: Socket) {
    silent.add(socket);
    const ignore = (): void => undefined; // a reset before the first byte is nobody's business
    socket.on('error', ignore);
    socket.setTimeout(idleMs, () => socket.destroy());
    socket.once('close', () => silent.delete(socket));
    socket.once('readable', () => {
      silent.delete(socket);
      const first = socket.read(1) as Buffer | null;
      if (first === null) {
        socket.destroy();
        return;
      }
      if (isLetter(first[0] as number)) {
        // Read (and drop) what the client sends until it closes, so the
        // kernel has no unread data to answer our close with a reset.
        socket.end(PLAIN_HTTP_ANSWER);
        socket.resume();
        return;
      }
      socket.unshift(first);
      socket.setTimeout(0);
      socket.off('error', ignore);
      for (const listener of tlsListeners) listener.call(this, socket);
    });
  });
  const closeIdle = server.closeIdleConnections.bind(server);
  server.closeIdleConnections = () => {
    closeIdle();
    for (const socket of silent) socket.destroy();
  };
}

export interface CertificateSummary {
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  fingerprint: string;
}

/** What the logs say about a certificate: who, until when, and its SHA-256 fingerprint. */
export function describeCertificate(pem: Buffer | string): CertificateSummary {
  const cert = new X509Certificate(pem);
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: new Date(cert.validTo).toISOString(),
    fingerprint: cert.fingerprint256,
  };
}

const sameFiles = (a: TlsFiles, b: TlsFiles): boolean =>
  a.cert.equals(b.cert) && a.key.equals(b.key) && a.ca.length === b.ca.length && a.ca.every((pem, i) => b.ca[i]?.equals(pem) === true);

export interface CertificateWatchOptions {
  /** How often the files are stat'ed; default 2 s. */
  intervalMs?: number;
  /** How long after a change the files are read, so a certificate and its key written one after the other load together. */
  settleMs?: number;
}

/**
 * Swaps http.tls's files into the server when asked (SIGHUP) and when they
 * change. New connections get the new context; connections already open
 * keep theirs. A reload that fails keeps the old context and logs why.
 * fs.watchFile (stat polling) rather than fs.watch: it follows symlinks, so
 * a Kubernetes secret's `..data` swap or certbot's `live/` links are seen,
 * and it works on network filesystems.
 */
export class CertificateReloader {
  readonly #server: HttpsServer;
  readonly #tls: TlsConfig;
  readonly #log: Logger;
  readonly #paths: string[];
  readonly #settleMs: number;
  /** What the last successful reload loaded; unknown until then, so the first change always reloads. */
  #loaded: TlsFiles | undefined;
  #queue: Promise<boolean> = Promise.resolve(true);
  #settle: NodeJS.Timeout | undefined;
  #closed = false;
  // libuv calls this only when a stat field changed (or the file came or went);
  // a rewrite of the same size on the same inode within one tick of the
  // filesystem clock is invisible to any stat poll: SIGHUP is for that.
  readonly #onChange = (): void => {
    clearTimeout(this.#settle);
    this.#settle = setTimeout(() => void this.#enqueue('file change', true), this.#settleMs);
    this.#settle.unref();
  };

  constructor(server: HttpsServer, tls: TlsConfig, log: Logger, options: CertificateWatchOptions = {}) {
    this.#server = server;
    this.#tls = tls;
    this.#log = log;
    this.#settleMs = options.settleMs ?? 200;
    this.#paths = [...new Set([tls.certificate, tls.key, ...tls.clientCas])];
    for (const path of this.#paths) watchFile(path, { interval: options.intervalMs ?? 2000, persistent: false }, this.#onChange);
    server.once('close', () => this.close());
  }

  /** Reads the files again and serves them to new connections; false (old context kept, error logged) if they are unusable. */
  reload(trigger: string): Promise<boolean> {
    return this.#enqueue(trigger, false);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#settle);
    for (const path of this.#paths) unwatchFile(path, this.#onChange);
  }

  #enqueue(trigger: string, onlyIfChanged: boolean): Promise<boolean> {
    const next = this.#queue.then(() => this.#load(trigger, onlyIfChanged));
    this.#queue = next;
    return next;
  }

  async #load(trigger: string, onlyIfChanged: boolean): Promise<boolean> {
    let files: TlsFiles;
    let options: SecureContextOptions;
    try {
      files = await readTlsFiles(this.#tls);
      if (onlyIfChanged && this.#loaded !== undefined && sameFiles(files, this.#loaded)) return true;
      options = contextOptions(this.#tls, files);
    } catch (err) {
      this.#log.error({ trigger, err: (err as Error).message }, 'TLS reload failed: still serving the previous certificate');
      return false;
    }
    this.#server.setSecureContext(options);
    this.#loaded = files;
    this.#log.info({ trigger, certificate: describeCertificate(files.cert), clientCas: this.#tls.clientCas.length }, 'TLS certificate reloaded');
    return true;
  }
}

/** A CertificateReloader for `server`, which createServer built from the same http.tls; it stops when the server closes. */
export function watchCertificates(server: Server, tls: TlsConfig, log: Logger, options?: CertificateWatchOptions): CertificateReloader {
  if (!(server instanceof HttpsServer)) throw new TypeError('watchCertificates: the server does not speak TLS');
  return new CertificateReloader(server, tls, log, options);
}
