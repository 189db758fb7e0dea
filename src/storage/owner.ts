/**
 * Which process wrote a scratch file (a fill spool, a temp file), so that a
 * restarted Stevedore can remove what its killed predecessor left behind
 * without touching what a live process sharing the storage is writing.
 *
 * An owner tag is `<host>-<pid>-<run>`: the first 8 hex digits of the
 * SHA-256 of the host name, the process id in base 36, and a random id of
 * this run. A tag is dead when it names this host and another run whose
 * process no longer runs (or is a zombie), or whose pid is ours (a container
 * restarts its process as the same pid). Tags of other hosts are never judged
 * here: their files are removed by age instead.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

const hostTag = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

/** This process's owner tag. */
export const OWNER = `${hostTag}-${process.pid.toString(36)}-${randomBytes(3).toString('hex')}`;

/** An owner tag at the start of a name, followed by `-` and the rest. */
const OWNED_NAME = /^([0-9a-f]{8})-([0-9a-z]{1,8})-([0-9a-f]{6})-/;

/** The owner tag a scratch name starts with, or undefined. */
export function ownerOf(name: string): string | undefined {
  const match = OWNED_NAME.exec(name);
  return match === null ? undefined : `${match[1]}-${match[2]}-${match[3]}`;
}

/** True when `tag` names a run on this host that is over, so its scratch files are garbage. */
export function isDeadOwner(tag: string): boolean {
  if (tag === OWNER) return false;
  const [host, pid36] = tag.split('-');
  if (host !== hostTag || pid36 === undefined) return false;
  const pid = Number.parseInt(pid36, 36);
  return pid === process.pid || !isRunning(pid);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A process killed a moment ago may still be a zombie, which kill(0) reports as alive.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

/**
 * Upload session ids of blob fills: `fill-<owner>-<random>`. Client upload
 * sessions (pushes) have UUIDs, so a fill's spool is told apart by its name.
 */
const FILL_PREFIX = 'fill-';

export const fillSessionId = (): string => `${FILL_PREFIX}${OWNER}-${randomBytes(8).toString('hex')}`;

export const isFillSession = (id: string): boolean => id.startsWith(FILL_PREFIX);

/** The owner tag of a fill session id, or undefined for other sessions. */
export const fillSessionOwner = (id: string): string | undefined => (isFillSession(id) ? ownerOf(id.slice(FILL_PREFIX.length)) : undefined);
