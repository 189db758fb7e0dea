/**
 * Which children of an index a prefetch fetches: every one, or the best
 * match for each platform asked for (registry/negotiate.ts's rule, the one
 * a client pulling that platform follows), plus the attestation manifests
 * BuildKit attaches to a chosen child (`vnd.docker.reference.digest`).
 */
import type { Descriptor, Platform } from '../registry/manifest.js';
import { childForPlatform, formatPlatform, parsePlatform } from '../registry/negotiate.js';

export type PlatformChoice = { all: true } | { all: false; platforms: readonly Platform[] };

export interface ChildSelection {
  selected: Descriptor[];
  /** Platforms asked for that no child matches, as `os/arch[/variant]`. */
  missing: string[];
}

const REFERENCE_DIGEST = 'vnd.docker.reference.digest';
const REFERENCE_TYPE = 'vnd.docker.reference.type';

/** `--platform` values (default: the configured defaultplatform), or every platform with `--all-platforms`. */
export function platformChoice(values: readonly string[], all: boolean, fallback: Platform): PlatformChoice {
  if (all) return { all: true };
  return { all: false, platforms: values.length === 0 ? [fallback] : values.map(parsePlatform) };
}

export function selectChildren(children: readonly Descriptor[], choice: PlatformChoice): ChildSelection {
  if (choice.all) return { selected: [...children], missing: [] };
  const chosen = new Set<string>();
  const missing: string[] = [];
  for (const platform of choice.platforms) {
    const child = childForPlatform(children, platform);
    if (child === undefined) missing.push(formatPlatform(platform));
    else chosen.add(child.digest.value);
  }
  for (const child of children) {
    const subject = child.annotations?.[REFERENCE_DIGEST];
    if (child.annotations?.[REFERENCE_TYPE] === 'attestation-manifest' && subject !== undefined && chosen.has(subject)) {
      chosen.add(child.digest.value);
    }
  }
  // In the index's order, each once.
  const seen = new Set<string>();
  const selected = children.filter((child) => chosen.has(child.digest.value) && !seen.has(child.digest.value) && seen.add(child.digest.value));
  return { selected, missing };
}
