/**
 * The `access` rules: who may do what to which repositories, over routed
 * (storage) names, first match wins, no match denied. A rule matches a
 * caller by user name, by group (`group:ci`: from the groups file, or a
 * bearer token's groups claim), or `anonymous: true` for everyone, callers
 * who sent no credentials included. The first rule matching the repository
 * and the caller decides by its actions (`actions: []` denies). Without rules, an authenticated caller may do
 * everything (pull, and push and delete where repositories are hosted) and an anonymous one nothing
 * (Distribution's behaviour).
 */
import { parse } from 'yaml';
import type { AccessRule, Action } from '../config/types.js';
import { repositoryPattern } from '../routing/patterns.js';
import type { Caller } from './caller.js';
import type { WatchedFile } from './watched.js';

interface CompiledRule {
  repositories: RegExp[];
  users: ReadonlySet<string>;
  groups: ReadonlySet<string>;
  anonymous: boolean;
  actions: ReadonlySet<Action>;
}

/** group → members. */
export type Groups = ReadonlyMap<string, ReadonlySet<string>>;

/** A groups file: `{ci: [bob, carol], admins: [alice]}`. */
export function parseGroups(text: string): Groups {
  // Every scalar a string, as in config.yml: a user named 1234 stays "1234".
  const doc = parse(text, { schema: 'failsafe' }) as unknown;
  const groups = new Map<string, Set<string>>();
  if (doc === null || doc === undefined) return groups;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new Error('expected a mapping of group names to lists of users');
  for (const [group, members] of Object.entries(doc as Record<string, unknown>)) {
    if (!Array.isArray(members) || !members.every((m) => typeof m === 'string')) throw new Error(`group ${group}: expected a list of user names`);
    groups.set(group, new Set(members as string[]));
  }
  return groups;
}

export class AccessRules {
  private readonly rules: CompiledRule[] | undefined;
  readonly anonymousPull: boolean;

  /** `rules` undefined: no `access` section (authenticated callers pull everything). */
  constructor(
    rules: readonly AccessRule[] | undefined,
    private readonly groupsFile?: WatchedFile<Groups>,
  ) {
    this.rules = rules?.map((rule) => ({
      repositories: rule.repositories.map(repositoryPattern),
      users: new Set(rule.users),
      groups: new Set(rule.groups),
      anonymous: rule.anonymous,
      actions: new Set(rule.actions),
    }));
    this.anonymousPull = rules?.some((r) => r.anonymous && r.actions.includes('pull')) ?? false;
  }

  /** The groups the groups file puts `user` in (it may re-read the file first). */
  async groupsOf(user: string | undefined): Promise<string[]> {
    if (user === undefined || this.groupsFile === undefined) return [];
    const groups = await this.groupsFile.get();
    const out: string[] = [];
    for (const [group, members] of groups) if (members.has(user)) out.push(group);
    return out;
  }

  /** Whether `caller` (its groups from the file and its token) may do `action` on repository `name`. */
  allows(caller: Caller, name: string, action: Action): boolean {
    // No rules: whoever authenticated may do anything, as in Distribution (a token's grants still bound it;
    // proxied repositories take no writes anyway). A token need not name a subject.
    if (this.rules === undefined) return caller.via !== 'anonymous';
    for (const rule of this.rules) {
      if (!rule.repositories.some((p) => p.test(name))) continue;
      if (!this.covers(rule, caller)) continue;
      // First match wins: a rule naming this caller and repository decides, yes or no.
      return rule.actions.has(action);
    }
    return false;
  }

  private covers(rule: CompiledRule, caller: Caller): boolean {
    // An anonymous rule is for everyone: logging in never takes away what anonymous callers get.
    if (rule.anonymous) return true;
    if (caller.user === undefined) return false;
    if (rule.users.has(caller.user)) return true;
    return caller.groups.some((g) => rule.groups.has(g));
  }
}
