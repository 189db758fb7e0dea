/**
 * Byte sizes in config: a whole number of bytes, or a number with a unit,
 * binary (KiB, MiB, GiB, TiB: powers of 1024) or decimal (kB, MB, GB, TB:
 * powers of 1000), as operators write them (`64MiB`, `200GiB`, `1.5GB`).
 */
export class SizeError extends Error {}

const UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** Parses a size into bytes; throws SizeError with a message fit for the operator. */
export function parseSize(input: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(input.trim());
  if (match === null) throw new SizeError(`invalid size "${input}": write bytes, or a number with a unit such as 64MiB or 2GB`);
  const [, number = '', unit = ''] = match;
  const factor = unit === '' ? 1 : UNITS[unit.toLowerCase()];
  if (factor === undefined) throw new SizeError(`unknown unit "${unit}" in size "${input}": use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB`);
  const bytes = Math.floor(Number(number) * factor);
  if (!Number.isSafeInteger(bytes)) throw new SizeError(`size "${input}" is too large`);
  return bytes;
}
