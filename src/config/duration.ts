/**
 * Go `time.Duration` strings ("168h", "1h30m", "500ms", "1.5s", "0"), the
 * form Distribution's config.yml uses, converted to milliseconds.
 *
 * Deliberate differences from Go's time.ParseDuration:
 * - negative durations are rejected: no setting means anything by them;
 * - a bare number other than 0 is rejected. Distribution decodes a YAML
 *   integer straight into nanoseconds (`ttl: 10` is 10ns), which is never what
 *   the writer meant, so we ask for a unit instead of guessing;
 * - the result is rounded UP to a whole millisecond, so that a tiny non-zero
 *   duration never becomes 0, which several settings read as "forever".
 */

export class DurationError extends Error {
  readonly code = 'ERR_CONFIG_DURATION';

  constructor(message: string) {
    super(message);
    this.name = 'DurationError';
  }
}

const NANOS_PER_UNIT: ReadonlyMap<string, number> = new Map([
  ['ns', 1],
  ['us', 1e3],
  ['µs', 1e3], // U+00B5 micro sign
  ['μs', 1e3], // U+03BC Greek mu
  ['ms', 1e6],
  ['s', 1e9],
  ['m', 60e9],
  ['h', 3600e9],
]);

/** Go durations are int64 nanoseconds; beyond this Go refuses the value too. */
const MAX_NANOS = 2 ** 63 - 1;

/** One "<number><unit>" component; the unit is every following char that is neither digit nor dot, as in Go. */
const COMPONENT = /(\d*)(?:\.(\d*))?([^\d.]*)/y;

export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (input === 0) return 0;
    throw new DurationError(
      `a bare number (${input}) is not a duration: add a unit, e.g. "${input}s" (units: ns, us, ms, s, m, h)`,
    );
  }
  const text = input;
  if (text === '') throw new DurationError('empty duration: write e.g. "10s", or "0"');

  let rest = text;
  let negative = false;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    negative = rest.startsWith('-');
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') throw new DurationError(`invalid duration "${text}"`);

  let nanos = 0;
  let pos = 0;
  while (pos < rest.length) {
    COMPONENT.lastIndex = pos;
    const match = COMPONENT.exec(rest);
    const whole = match?.[1] ?? '';
    const fraction = match?.[2] ?? '';
    const unit = match?.[3] ?? '';
    if (match === null || (whole === '' && fraction === '')) {
      throw new DurationError(`invalid duration "${text}": expected a number at "${rest.slice(pos)}"`);
    }
    if (unit === '') {
      throw new DurationError(
        `missing unit in duration "${text}": add one of ns, us, ms, s, m, h (e.g. "${text}s")`,
      );
    }
    const perUnit = NANOS_PER_UNIT.get(unit);
    if (perUnit === undefined) {
      throw new DurationError(`unknown unit "${unit}" in duration "${text}": use ns, us, ms, s, m or h`);
    }
    // Whole and fraction apart, the fraction rounded to whole nanoseconds: 1.1 * 1e9 is not 1.1e9 in floating point.
    nanos += Number(whole === '' ? '0' : whole) * perUnit;
    if (fraction !== '') nanos += Math.round(Number(`0.${fraction}`) * perUnit);
    pos = COMPONENT.lastIndex;
  }

  if (negative && nanos > 0) throw new DurationError(`negative duration "${text}" is not allowed`);
  if (nanos > MAX_NANOS) throw new DurationError(`duration "${text}" is too large (the limit is about 292 years)`);
  return Math.ceil(nanos / 1e6);
}

/** Renders milliseconds back as a Go duration string, for logs and messages. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0) parts.push(`${rest}ms`);
  return parts.join('');
}
