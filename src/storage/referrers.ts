/**
 * Referrers known locally: the manifests linked in a repository whose
 * `subject` is the digest asked about. Found by scanning the repository's
 * revisions; what each revision refers to is content-addressed, so it is
 * parsed once and remembered (LocalStorage.subjects).
 */
import type { Digest } from '../registry/digest.js';
import { parseManifest } from '../registry/manifest.js';
import type { RepositoryName } from '../registry/names.js';
import { filterReferrers, type ReferrerDescriptor, referrerDescriptor } from '../registry/referrers.js';
import type { ReferrerService, ReferrersResult } from '../registry/services.js';
import { linkedDigests } from './links.js';
import type { LocalStorage } from './local.js';
import { pathFor } from './paths.js';

/** What a stored manifest refers to, for the referrers answer. */
export interface SubjectInfo {
  subject?: string;
  descriptor: ReferrerDescriptor;
}

async function subjectOf(storage: LocalStorage, digest: Digest): Promise<SubjectInfo | undefined> {
  const known = storage.subjects.get(digest.value);
  if (known !== undefined) return known;
  let info: SubjectInfo;
  try {
    const { payload } = await storage.readManifest(digest);
    const parsed = parseManifest(payload);
    info = { descriptor: referrerDescriptor(digest, payload.byteLength, parsed) };
    if (parsed.subject) info.subject = parsed.subject.digest.value;
  } catch {
    return undefined; // a revision whose payload is missing or unreadable refers to nothing
  }
  storage.subjects.set(digest.value, info);
  return info;
}

/** Every manifest of the repository whose subject is `subject`. */
export async function localReferrers(storage: LocalStorage, name: RepositoryName, subject: Digest): Promise<ReferrerDescriptor[]> {
  const out: ReferrerDescriptor[] = [];
  for (const digest of await linkedDigests(storage.driver, pathFor({ kind: 'revisionsRoot', name }))) {
    const info = await subjectOf(storage, digest);
    if (info?.subject === subject.value) out.push(info.descriptor);
  }
  return out.sort((a, b) => (a.digest < b.digest ? -1 : 1));
}

export class LocalReferrers implements ReferrerService {
  constructor(
    private readonly storage: LocalStorage,
    private readonly name: RepositoryName,
  ) {}

  async list(subject: Digest, artifactType?: string): Promise<ReferrersResult> {
    const all = await localReferrers(this.storage, this.name, subject);
    return { manifests: filterReferrers(all, artifactType), filtered: artifactType !== undefined };
  }
}
