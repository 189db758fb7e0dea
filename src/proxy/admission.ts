/**
 * Admission of new upstream fills (`limits.fills`, `limits.fillsperclient`).
 *
 * Only a fill that would start a new upstream download takes a slot: a
 * client joining a download already under way is always let in, since it
 * costs the upstream nothing. A slot is held from the moment the fill is
 * asked for until it is over (committed, failed or abandoned), whether or not
 * the client that started it is still there. A request with no client
 * address (internal callers) counts only against the overall limit.
 */
import { RegistryError } from '../registry/errors.js';

export interface AdmissionLimits {
  /** Upstream fills at once, overall. */
  fills: number;
  /** Upstream fills one client address may have started and not yet finished. */
  fillsPerClient: number;
}

/**
 * Seconds a refused client is told to wait (`Retry-After`): a layer download
 * usually takes seconds, so slots come free at about this pace.
 */
export const FILL_RETRY_AFTER_SECONDS = 5;

/** Gives a slot back; calling it again does nothing. */
export type Release = () => void;

export class FillAdmission {
  private running = 0;
  private readonly byClient = new Map<string, number>();

  constructor(private readonly limits: AdmissionLimits) {}

  /** Fills holding a slot now. */
  get active(): number {
    return this.running;
  }

  /** Fills holding a slot now that `client` started. */
  activeFor(client: string): number {
    return this.byClient.get(client) ?? 0;
  }

  /**
   * Takes a slot for a new fill started by `client`, or throws
   * TOOMANYREQUESTS (this client has its share under way) or UNAVAILABLE
   * (the whole process has), each with a `Retry-After`.
   */
  admit(client: string | undefined): Release {
    const mine = client === undefined ? 0 : (this.byClient.get(client) ?? 0);
    if (client !== undefined && mine >= this.limits.fillsPerClient) {
      throw new RegistryError(
        'TOOMANYREQUESTS',
        `this client has ${mine} blob downloads from upstreams under way (limits.fillsperclient); try again later`,
        { retryAfter: String(FILL_RETRY_AFTER_SECONDS), detail: { limit: this.limits.fillsPerClient } },
      );
    }
    if (this.running >= this.limits.fills) {
      throw new RegistryError(
        'UNAVAILABLE',
        `stevedore has ${this.running} blob downloads from upstreams under way (limits.fills); try again later`,
        { retryAfter: String(FILL_RETRY_AFTER_SECONDS), detail: { limit: this.limits.fills } },
      );
    }
    this.running += 1;
    if (client !== undefined) this.byClient.set(client, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running -= 1;
      if (client === undefined) return;
      const left = (this.byClient.get(client) ?? 1) - 1;
      if (left <= 0) this.byClient.delete(client);
      else this.byClient.set(client, left);
    };
  }
}
