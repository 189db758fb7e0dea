/**
 * The `auth` section (Distribution's providers plus Stevedore's token
 * issuer, groups and lockout) and the `access` rules, with the checks that
 * span their keys.
 */
import { isIP } from 'node:net';
import type { NoticeLog } from './errors.js';
import type { Value } from './validate.js';
import { isRawMap, type Raw } from './raw.js';
import type { AccessRule, Action, AuthConfig, TokenAuthConfig } from './types.js';

type Str = (path: string) => string | undefined;
type Num = (path: string) => number;

const ACTIONS: readonly Action[] = ['pull', 'push', 'delete'];
/** Repository patterns as routing's allow/deny take them. */
const PATTERN = /^[a-z0-9._\-/*]+$/;
const USER = /^(?:group:)?[^\s:]{1,255}$/;

/**
 * "required" for a key that has no value, unless the validator already
 * refused the value written there (one message per mistake, not two).
 */
function required(log: NoticeLog, path: string, message: string): void {
  if (!log.notices.some((n) => n.level === 'error' && n.path === path)) log.error(path, message);
}

export function isAddressOrCidr(entry: string): boolean {
  const slash = entry.indexOf('/');
  if (slash < 0) return isIP(entry) !== 0;
  const family = isIP(entry.slice(0, slash));
  const bits = entry.slice(slash + 1);
  if (family === 0 || !/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

export function buildAuth(str: Str, num: Num, present: ReadonlySet<string>, log: NoticeLog): AuthConfig | undefined {
  const general: Omit<AuthConfig, 'htpasswd' | 'token'> = {
    cacheMs: num('auth.cache'),
    lockout: { attempts: num('auth.lockout.attempts'), windowMs: num('auth.lockout.window') },
  };
  const groups = str('auth.groups');
  if (groups !== undefined) general.groups = groups;

  if (present.has('auth.htpasswd')) {
    const realm = str('auth.htpasswd.realm');
    const path = str('auth.htpasswd.path');
    if (realm === undefined) required(log, 'auth.htpasswd.realm', 'required when auth.htpasswd is set');
    if (path === undefined) required(log, 'auth.htpasswd.path', 'required when auth.htpasswd is set');
    return { ...general, htpasswd: { realm: realm ?? '', path: path ?? '' } };
  }
  if (present.has('auth.token')) return { ...general, token: buildToken(str, num, present, log) };
  if (groups !== undefined || [...present].some((p) => p.startsWith('auth.lockout') || p === 'auth.cache')) {
    log.warn('auth', 'no provider (auth.htpasswd or auth.token) is configured, so these settings do nothing');
  }
  return undefined;
}

function buildToken(str: Str, num: Num, present: ReadonlySet<string>, log: NoticeLog): TokenAuthConfig {
  const issuing = present.has('auth.token.issue');
  const token: TokenAuthConfig = {
    // Stevedore's own issuer needs no names from the operator: these are what its tokens say.
    service: str('auth.token.service') ?? (issuing ? 'stevedore' : ''),
    issuer: str('auth.token.issuer') ?? (issuing ? 'stevedore' : ''),
    clockSkewMs: num('auth.token.clockskew'),
    groupsClaim: str('auth.token.groupsclaim') ?? 'groups',
  };
  const realm = str('auth.token.realm');
  const bundle = str('auth.token.rootcertbundle');
  const jwks = str('auth.token.jwks');
  if (realm !== undefined) token.realm = realm;
  if (bundle !== undefined) token.rootCertBundle = bundle;
  if (jwks !== undefined) token.jwks = jwks;
  if (issuing) {
    const key = str('auth.token.issue.key');
    const users = str('auth.token.issue.users');
    if (key === undefined) required(log, 'auth.token.issue.key', 'required: the PEM private key tokens are signed with (created there if missing)');
    if (users === undefined) required(log, 'auth.token.issue.users', 'required: the htpasswd file of the users tokens are issued to');
    token.issue = { key: key ?? '', users: users ?? '', expiryMs: num('auth.token.issue.expiry') };
    if (token.issue.expiryMs < 1000) log.error('auth.token.issue.expiry', 'must be at least 1s');
  } else {
    for (const key of ['realm', 'service', 'issuer'] as const) {
      if (str(`auth.token.${key}`) === undefined) required(log, `auth.token.${key}`, 'required when auth.token is set (unless auth.token.issue makes Stevedore the issuer)');
    }
    if (bundle === undefined && jwks === undefined) {
      required(log, 'auth.token.rootcertbundle', 'required when auth.token is set: the certificates token signatures are checked with (or auth.token.jwks)');
    }
  }
  if (jwks !== undefined && /^http:\/\//i.test(jwks)) log.warn('auth.token.jwks', 'fetched over plain http: anyone on the path could swap the keys');
  return token;
}

const strings = (value: Raw | undefined): string[] | undefined =>
  Array.isArray(value) && value.every((v): v is string => typeof v === 'string') ? value : undefined;

/** `access:` — a list of rules; every problem is a notice with the rule's index. */
export function buildAccess(value: Value, log: NoticeLog): AccessRule[] {
  if (!Array.isArray(value)) {
    log.error('access', 'expected a list of rules');
    return [];
  }
  const rules: AccessRule[] = [];
  value.forEach((raw, index) => {
    const at = `access[${index}]`;
    if (!isRawMap(raw)) {
      log.error(at, 'expected a mapping with repositories, users or anonymous, and actions');
      return;
    }
    for (const key of raw.keys()) {
      if (!['repositories', 'users', 'anonymous', 'actions'].includes(key)) log.error(`${at}.${key}`, 'unknown key: a rule has repositories, users, anonymous and actions');
    }
    const repositories = strings(raw.get('repositories'));
    const who = raw.has('users') ? strings(raw.get('users')) : [];
    const actions = strings(raw.get('actions'));
    // Spelled as every boolean key of the file may be (true, yes, on, any case).
    const anonymousRaw = raw.get('anonymous');
    const anonymous = typeof anonymousRaw === 'string' && /^(?:true|yes|on)$/i.test(anonymousRaw);
    if (anonymousRaw !== undefined && !(typeof anonymousRaw === 'string' && /^(?:true|yes|on|false|no|off)$/i.test(anonymousRaw))) {
      log.error(`${at}.anonymous`, 'expected true or false');
    }
    if (repositories === undefined || repositories.length === 0) log.error(`${at}.repositories`, 'required: a list of repository patterns');
    for (const pattern of repositories ?? []) {
      if (!PATTERN.test(pattern)) log.error(`${at}.repositories`, `"${pattern}" is not a repository pattern (name characters, "*" within a component, "**" across components)`);
    }
    if (who === undefined) log.error(`${at}.users`, 'expected a list of user names and group:<name> entries');
    for (const user of who ?? []) if (!USER.test(user)) log.error(`${at}.users`, `"${user}" is not a user name or group:<name>`);
    if ((who ?? []).length === 0 && !anonymous) log.error(at, 'names nobody: give users, or anonymous: true');
    if (actions === undefined) log.error(`${at}.actions`, `required: a list of ${ACTIONS.join(', ')} ([] denies)`);
    for (const action of actions ?? []) if (!ACTIONS.includes(action as Action)) log.error(`${at}.actions`, `"${action}" is not one of ${ACTIONS.join(', ')}`);
    const users = (who ?? []).filter((u) => !u.startsWith('group:'));
    const groups = (who ?? []).filter((u) => u.startsWith('group:')).map((u) => u.slice('group:'.length));
    rules.push({
      repositories: repositories ?? [],
      users,
      groups,
      anonymous,
      actions: (actions ?? []).filter((a): a is Action => ACTIONS.includes(a as Action)),
    });
  });
  return rules;
}
