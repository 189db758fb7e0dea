import t from 'tap';
import { RegistryError } from '../../src/registry/errors.js';
import { parseRange, resolveRange } from '../../src/registry/range.js';

const rangeOf = (header: string, size: number): [number, number] | string => {
  try {
    const spec = parseRange(header);
    if (spec === undefined) return 'whole';
    const r = resolveRange(spec, size);
    return [r.start, r.end];
  } catch (err) {
    return err instanceof RegistryError ? err.code : 'other';
  }
};

t.test('range table', async (t) => {
  const table: [string, number, [number, number] | string][] = [
    ['bytes=0-99', 1000, [0, 99]],
    ['bytes=100-', 1000, [100, 999]],
    ['bytes=-100', 1000, [900, 999]],
    ['bytes=-5000', 1000, [0, 999]],
    ['bytes=990-5000', 1000, [990, 999]],
    ['bytes=999-999', 1000, [999, 999]],
    ['bytes=1000-', 1000, 'RANGE_INVALID'],
    ['bytes=5-4', 1000, 'RANGE_INVALID'],
    ['bytes=-0', 1000, 'RANGE_INVALID'],
    ['bytes=-', 1000, 'RANGE_INVALID'],
    ['bytes=abc', 1000, 'RANGE_INVALID'],
    ['bytes=99999999999999999999-', 1000, 'RANGE_INVALID'],
    ['bytes=0-0', 0, 'RANGE_INVALID'],
    ['bytes=0-1,5-6', 1000, 'whole'],
    ['items=0-5', 1000, 'whole'],
    ['garbage', 1000, 'RANGE_INVALID'],
  ];
  for (const [header, size, expected] of table) t.same(rangeOf(header, size), expected, `${header} of ${size}`);
  t.equal(parseRange(undefined), undefined);
});
