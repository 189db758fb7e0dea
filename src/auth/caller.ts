/** Who a request is from, once its credentials are checked; and the access a bearer token grants. */
import type { Action } from '../config/types.js';

/** What a token's `access` claim grants: `repository:<name>` or `registry:catalog` → actions (`*` for all). */
export type Grants = ReadonlyMap<string, ReadonlySet<string>>;

export interface Caller {
  /** undefined: anonymous (no credentials sent). */
  readonly user?: string;
  /** Groups from a bearer token's groups claim; the groups file is consulted by the rules. */
  readonly groups: readonly string[];
  readonly via: 'anonymous' | 'basic' | 'bearer';
  /** Bearer tokens only: what the token grants. Requests need the grant as well as the rules' consent. */
  readonly grants?: Grants;
  /**
   * A bearer token that did not verify, and why: refused by whatever the
   * request asks for, with a challenge naming the scope it needs.
   */
  readonly rejected?: string;
}

export const ANONYMOUS: Caller = Object.freeze({ groups: Object.freeze([]) as readonly string[], via: 'anonymous' as const });

export const grantKey = (type: string, name: string): string => `${type}:${name}`;

export function granted(grants: Grants, type: string, name: string, action: Action | '*'): boolean {
  const actions = grants.get(grantKey(type, name));
  return actions !== undefined && (actions.has(action) || actions.has('*'));
}

/** A token `access` claim (`[{type, name, actions}]`) as grants; malformed entries grant nothing. */
export function grantsOf(claim: unknown): Grants {
  const grants = new Map<string, Set<string>>();
  if (!Array.isArray(claim)) return grants;
  for (const entry of claim.slice(0, 1000) as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { type, name, actions } = entry as { type?: unknown; name?: unknown; actions?: unknown };
    if (typeof type !== 'string' || typeof name !== 'string' || !Array.isArray(actions)) continue;
    const key = grantKey(type, name);
    const set = grants.get(key) ?? new Set<string>();
    for (const action of actions) if (typeof action === 'string') set.add(action);
    grants.set(key, set);
  }
  return grants;
}
