/**
 * Request → scope: which registry serves a repository, under which name in
 * storage, for which upstream. Clients address mirrors in three ways, tried
 * in this order:
 *
 *   1. containerd's `?ns=<host>` (added to every mirror request): the host
 *      names a configured upstream; a leading path segment naming the same
 *      upstream (an `override_path` mirror) is dropped;
 *   2. a leading path segment that is a configured host
 *      (`/v2/ghcr.io/myorg/app/…`, what podman/CRI-O and path-prefixed
 *      containerd mirrors send);
 *   3. otherwise the default upstream (`proxy.*`), where a single-segment
 *      name means `library/<name>` on Docker Hub; without one, local storage.
 *
 * Hosted repositories (`hosted:` patterns) are tried first, on the name as
 * written, when no `ns` names an upstream: they are served and written by
 * the hosted registry and never reach an upstream. No upstream may store
 * under a hosted name either (its cache would mix with what is pushed), so
 * a route that would is DENIED.
 *
 * Hosts are keys into the configured upstreams, never hosts to connect to:
 * an `ns` naming no configured upstream is NAME_UNKNOWN (or, with
 * `routing.unknownns: default`, the default upstream's) and opens nothing.
 *
 * Each upstream's repositories live in storage under its namespace: the
 * default upstream's at the root (registry:2's layout), the others' under
 * their host (`ghcr.io/myorg/app`), which is also the name a path-prefixed
 * client asks for, so the catalog and Distribution show the same names.
 */
import { nameInvalid, RegistryError } from '../registry/errors.js';
import { MAX_NAME_LENGTH, type RepositoryName } from '../registry/names.js';
import type { Registry } from '../registry/services.js';
import { accessMatcher, type RepositoryMatcher } from './patterns.js';

/** The scope a request runs in, passed down from the HTTP layer. */
export interface RequestScope {
  /** The registry that serves it: an upstream's pull-through registry, or local storage. */
  readonly registry: Registry;
  /** The repository's name in storage (and in the catalog). */
  readonly name: RepositoryName;
  /** The upstream serving it; undefined for local storage. */
  readonly upstream?: string;
}

export interface RoutedUpstream {
  name: string;
  /** Lower-case registry host names it stands for. */
  hosts: readonly string[];
  /** Storage name prefix: '' for the default upstream. */
  namespace: string;
  /** Single-segment names get `library/`. */
  dockerHub: boolean;
  allow: readonly string[];
  deny: readonly string[];
  registry: Registry;
}

interface Route {
  upstream: RoutedUpstream;
  allowed: RepositoryMatcher;
}

export interface RoutingOptions {
  /** The upstream of `proxy.*`, serving names no host routes elsewhere. */
  defaultUpstream?: RoutedUpstream;
  upstreams: readonly RoutedUpstream[];
  /** What serves names when there is no default upstream (a plain registry: the hosted one). */
  local: Registry;
  /** Hosted repositories beside the upstreams: their patterns and the registry that holds them. */
  hosted?: { registry: Registry; patterns: readonly string[] };
  unknownNs: 'reject' | 'default';
}

export class Routing {
  private readonly byHost = new Map<string, Route>();
  /** Storage namespaces of the upstreams other than the default: names the default upstream cannot store. */
  private readonly namespaces = new Map<string, string>();
  private readonly fallback: Route | undefined;
  /** Hosted names and their registry, when `hosted` patterns are configured. */
  private readonly hosted: { matches: RepositoryMatcher; registry: Registry } | undefined;

  constructor(private readonly options: RoutingOptions) {
    const hosted = options.hosted;
    this.hosted = hosted === undefined || hosted.patterns.length === 0 ? undefined : { matches: accessMatcher(hosted.patterns, []), registry: hosted.registry };
    const all = options.defaultUpstream === undefined ? options.upstreams : [options.defaultUpstream, ...options.upstreams];
    for (const upstream of all) {
      const route = { upstream, allowed: accessMatcher(upstream.allow, upstream.deny) };
      for (const host of upstream.hosts) this.byHost.set(host, route);
      if (upstream.namespace !== '') this.namespaces.set(upstream.namespace, upstream.name);
      if (upstream === options.defaultUpstream) this.fallback = route;
    }
  }

  /** Lists what is cached or stored, under the names clients use: one storage holds every upstream's repositories. */
  catalog(limit: number, last?: string): Promise<string[]> {
    return this.options.local.catalog(limit, last);
  }

  /**
   * The scope of a request for repository `path` (as written in the URL)
   * with containerd's `ns` parameter, if any. Throws NAME_UNKNOWN for an
   * unconfigured `ns`, DENIED for a repository the upstream's patterns refuse.
   */
  resolve(path: RepositoryName, ns: string | null): RequestScope {
    const explicit = ns !== null && ns !== '';
    if (this.hosted !== undefined && !explicit && this.hosted.matches(path)) return { registry: this.hosted.registry, name: path };
    const slash = path.indexOf('/');
    const first = slash < 0 ? undefined : path.slice(0, slash);
    let route: Route | undefined;
    let remote: string = path;
    if (explicit) {
      route = this.byHost.get(ns.toLowerCase());
      if (route === undefined) {
        if (this.options.unknownNs !== 'default' || this.fallback === undefined) {
          throw new RegistryError('NAME_UNKNOWN', `no upstream is configured for registry ${ns.slice(0, 255)}`, { detail: { ns: ns.slice(0, 255) } });
        }
        route = this.fallback;
      }
    }
    // Names are lower-case by their grammar, as the hosts are kept: no case folding on the warm path.
    const prefixed = first === undefined ? undefined : this.byHost.get(first);
    if (prefixed !== undefined && (route === undefined || prefixed === route)) {
      route = prefixed;
      remote = path.slice(slash + 1);
    }
    route ??= this.fallback;
    if (route === undefined) return { registry: this.options.local, name: path };
    const { upstream } = route;
    if (upstream.dockerHub && !remote.includes('/')) remote = `library/${remote}`;
    if (!route.allowed(remote)) {
      throw new RegistryError('DENIED', `repository ${remote} of upstream ${upstream.name} is not served by this mirror`, {
        detail: { upstream: upstream.name, name: remote },
      });
    }
    // The default upstream stores at the root: its `ghcr.io/x` would be another upstream's `x`.
    if (upstream.namespace === '' && first !== undefined && remote === path) {
      const owner = this.namespaces.get(first);
      if (owner !== undefined) {
        throw new RegistryError('DENIED', `names under ${first}/ are the cache of upstream ${owner}: the ${upstream.name} upstream cannot serve ${remote} here`, {
          detail: { upstream: upstream.name, name: remote, namespace: first },
        });
      }
    }
    // Valid parts joined stay valid (namespaces are host names, checked at startup); only the length can grow.
    const stored = upstream.namespace === '' ? remote : `${upstream.namespace}/${remote}`;
    if (stored.length > MAX_NAME_LENGTH) throw nameInvalid(stored, `longer than ${MAX_NAME_LENGTH} characters once stored under ${upstream.namespace}/`);
    if (this.hosted?.matches(stored) === true) {
      throw new RegistryError('DENIED', `${stored} is a hosted repository here: upstream ${upstream.name} cannot serve it`, {
        detail: { upstream: upstream.name, name: stored },
      });
    }
    return { registry: upstream.registry, name: stored as RepositoryName, upstream: upstream.name };
  }
}
