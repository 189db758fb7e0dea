/**
 * The undici dispatcher of one upstream: a keep-alive Agent pooling
 * connections per origin, or, when HTTP(S)_PROXY is set, an
 * EnvHttpProxyAgent so corporate proxies work (it honours NO_PROXY itself).
 * Extra CAs are added to Node's roots, not put in their place.
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { Agent, EnvHttpProxyAgent, type Dispatcher } from 'undici';

export interface DispatcherOptions {
  /** Upstream name, for messages. */
  name: string;
  timeouts: { connectMs: number; headersMs: number; bodyMs: number };
  /** Path of a PEM file with CAs to trust in addition to the system's. */
  caBundle?: string;
  tlsVerify: boolean;
  env?: NodeJS.ProcessEnv;
}

const PROXY_VARIABLES = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'] as const;

export function usesProxy(env: NodeJS.ProcessEnv = process.env): boolean {
  return PROXY_VARIABLES.some((name) => (env[name] ?? '') !== '');
}

export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const tls = {
    timeout: options.timeouts.connectMs,
    rejectUnauthorized: options.tlsVerify,
    ...(options.caBundle === undefined ? {} : { ca: [...rootCertificates, readCaBundle(options.name, options.caBundle)] }),
  };
  const common = {
    connect: tls,
    headersTimeout: options.timeouts.headersMs,
    bodyTimeout: options.timeouts.bodyMs,
  };
  const env = options.env ?? process.env;
  if (usesProxy(env)) {
    // undici's own precedence: lower-case names first.
    const httpProxy = env.http_proxy ?? env.HTTP_PROXY;
    const httpsProxy = env.https_proxy ?? env.HTTPS_PROXY;
    const noProxy = env.no_proxy ?? env.NO_PROXY;
    return new EnvHttpProxyAgent({
      ...common,
      requestTls: tls,
      ...(httpProxy ? { httpProxy } : {}),
      ...(httpsProxy ? { httpsProxy } : {}),
      ...(noProxy !== undefined ? { noProxy } : {}),
    });
  }
  return new Agent(common);
}

function readCaBundle(name: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(`upstream ${name}: cannot read CA bundle: ${reason}`, { cause: err });
  }
}
