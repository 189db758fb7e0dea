/**
 * HTTP Range requests (RFC 9110 §14) on blobs: one byte range per request.
 * A request for several ranges is answered whole (a server may ignore Range,
 * §14.2, and no registry client wants multipart/byteranges); a set with any
 * syntactically broken range in it (two Range fields joined are one), or an
 * unsatisfiable single range, is refused with RANGE_INVALID. Empty list
 * elements are skipped, as §5.6.1 asks.
 */
import { RegistryError, truncate } from './errors.js';

export type RangeSpec =
  | { kind: 'from'; start: number; end?: number }
  | { kind: 'suffix'; length: number };

export interface ResolvedRange {
  start: number;
  /** Inclusive. */
  end: number;
  size: number;
}

const rangeInvalid = (header: string, size?: number): RegistryError =>
  new RegistryError('RANGE_INVALID', 'invalid content range', {
    detail: size === undefined ? { range: truncate(header, 100) } : { range: truncate(header, 100), size },
  });

/** Parses a Range header; undefined means "serve the whole blob". */
export function parseRange(header: string | undefined): RangeSpec | undefined {
  if (header === undefined) return undefined;
  const trimmed = header.trim();
  const eq = trimmed.indexOf('=');
  if (eq < 0) throw rangeInvalid(header);
  if (trimmed.slice(0, eq).trim().toLowerCase() !== 'bytes') return undefined;
  const specs: RangeSpec[] = [];
  for (const element of trimmed.slice(eq + 1).split(',')) {
    const spec = element.trim();
    if (spec !== '') specs.push(parseSpec(spec, header));
  }
  if (specs.length === 0) throw rangeInvalid(header);
  return specs.length === 1 ? specs[0] : undefined;
}

/** One `first-last` or `-suffix` of a Range header's set. */
function parseSpec(set: string, header: string): RangeSpec {
  const match = /^(\d{0,15})-(\d{0,15})$/.exec(set);
  if (!match) throw rangeInvalid(header);
  const [, first = '', last = ''] = match;
  if (first === '') {
    if (last === '') throw rangeInvalid(header);
    const length = Number(last);
    if (length === 0) throw rangeInvalid(header);
    return { kind: 'suffix', length };
  }
  const start = Number(first);
  if (last === '') return { kind: 'from', start };
  const end = Number(last);
  if (end < start) throw rangeInvalid(header);
  return { kind: 'from', start, end };
}

/** Applies a range to a blob of `size` bytes; throws RANGE_INVALID (416) when unsatisfiable. */
export function resolveRange(spec: RangeSpec, size: number): ResolvedRange {
  if (spec.kind === 'suffix') {
    if (size === 0) throw rangeInvalid(`bytes=-${spec.length}`, size);
    return { start: Math.max(0, size - spec.length), end: size - 1, size };
  }
  if (spec.start >= size) throw rangeInvalid(`bytes=${spec.start}-${spec.end ?? ''}`, size);
  return { start: spec.start, end: Math.min(spec.end ?? size - 1, size - 1), size };
}
