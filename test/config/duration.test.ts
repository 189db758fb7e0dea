import t from 'tap';

import { DurationError, formatDuration, parseDuration } from '../../src/config/duration.js';

t.test('valid Go durations, in milliseconds', async (t) => {
  const table: [string | number, number][] = [
    ['0', 0],
    [0, 0],
    ['0s', 0],
    ['-0', 0],
    ['+5s', 5000],
    ['168h', 168 * 3_600_000],
    ['10m', 600_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['2s', 2000],
    ['1.5h', 5_400_000],
    ['1.1s', 1100],
    ['.5s', 500],
    ['5.s', 5000],
    ['2h45m10s', 9_910_000],
    ['1500us', 2], // 1.5ms rounds up
    ['1µs', 1], // never rounds down to 0, which would mean "forever" for a ttl
    ['1μs', 1],
    ['1ns', 1],
    ['1000000ns', 1],
  ];
  for (const [input, ms] of table) t.equal(parseDuration(input), ms, `${JSON.stringify(input)} → ${ms}ms`);
});

t.test('invalid durations say why', async (t) => {
  const table: [string | number, RegExp][] = [
    ['', /empty duration/],
    ['10', /missing unit in duration "10".*"10s"/],
    [10, /bare number \(10\) is not a duration/],
    ['5 m', /unknown unit " m"/],
    ['3d', /unknown unit "d"/],
    ['1h30', /missing unit/],
    ['h', /expected a number at "h"/],
    ['.s', /expected a number/],
    ['-5s', /negative duration/],
    ['-', /invalid duration/],
    ['1e3s', /unknown unit "e"/],
    ['3000000h', /too large/],
  ];
  for (const [input, message] of table) {
    t.throws(() => parseDuration(input), { name: 'DurationError', code: 'ERR_CONFIG_DURATION', message }, JSON.stringify(input));
  }
  t.ok(new DurationError('x') instanceof Error);
});

t.test('formatDuration renders milliseconds back', async (t) => {
  t.equal(formatDuration(0), '0s');
  t.equal(formatDuration(5_400_000), '1h30m');
  t.equal(formatDuration(168 * 3_600_000), '168h');
  t.equal(formatDuration(1500), '1s500ms');
  t.equal(parseDuration(formatDuration(9_910_500)), 9_910_500);
});
