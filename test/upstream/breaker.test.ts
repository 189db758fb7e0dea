// The circuit breaker's state machine on an injected clock, and its log lines.
import t from 'tap';
import { CircuitBreaker } from '../../src/upstream/breaker.js';
import { captureLogger } from './fixtures/fakes.js';

const make = (): { breaker: CircuitBreaker; clock: { now: number }; log: ReturnType<typeof captureLogger> } => {
  const clock = { now: 1_000 };
  const log = captureLogger();
  const breaker = new CircuitBreaker({ name: 'hub', logger: log.logger, now: () => clock.now });
  return { breaker, clock, log };
};

t.test('opens after maxFails consecutive failures, probes once after failTimeout', async (t) => {
  const { breaker, clock, log } = make();
  for (let i = 0; i < 2; i++) {
    const permit = breaker.allow();
    t.ok(permit);
    breaker.failure('ECONNREFUSED', permit);
  }
  t.equal(breaker.state, 'closed', 'two failures are not enough');
  breaker.failure('ECONNREFUSED', breaker.allow());
  t.equal(breaker.state, 'open');
  t.ok(breaker.isOpen());
  t.equal(breaker.allow(), undefined, 'fails fast while open');
  t.equal(breaker.retryInMs(), 30_000);
  const offline = log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'upstream offline');
  t.match(offline, { upstream: 'hub', failures: 3, failTimeoutMs: 30_000, reason: 'ECONNREFUSED', level: 40 });

  clock.now += 29_999;
  t.equal(breaker.allow(), undefined);
  clock.now += 1;
  t.equal(breaker.state, 'half-open');
  t.notOk(breaker.isOpen(), 'a probe may go');
  const probe = breaker.allow();
  t.same(probe, { probe: true });
  t.equal(breaker.allow(), undefined, 'only one probe at a time');
  t.ok(breaker.isOpen());

  breaker.failure('timeout', probe);
  t.equal(breaker.state, 'open', 'a failed probe restarts the wait');
  t.equal(breaker.retryInMs(), 30_000);

  clock.now += 30_000;
  const second = breaker.allow();
  t.ok(second?.probe);
  breaker.success(second);
  t.equal(breaker.state, 'closed');
  t.notOk(breaker.isOpen());
  const online = log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'upstream back online');
  t.match(online, { upstream: 'hub', offlineMs: 60_000, level: 30 });
});

t.test('a success resets the count', async (t) => {
  const { breaker } = make();
  breaker.failure('x');
  breaker.failure('x');
  breaker.success();
  breaker.failure('x');
  breaker.failure('x');
  t.equal(breaker.state, 'closed');
});

t.test('a released probe lets the next request probe; late failures do not restart the wait', async (t) => {
  const { breaker, clock } = make();
  for (let i = 0; i < 3; i++) breaker.failure('x');
  clock.now += 30_000;
  const probe = breaker.allow();
  t.ok(probe?.probe);
  breaker.failure('late failure of an older request');
  t.equal(breaker.allow(), undefined, 'the probe is still out');
  breaker.release(probe ?? { probe: true });
  t.ok(breaker.allow()?.probe, 'next request probes');
});

t.test('options', async (t) => {
  const log = captureLogger();
  const breaker = new CircuitBreaker({ name: 'q', logger: log.logger, maxFails: 1, failTimeoutMs: 5 });
  breaker.failure('x');
  t.ok(breaker.isOpen());
  t.equal(new CircuitBreaker({ name: 'z', logger: log.logger, maxFails: 0 }).state, 'closed', 'maxFails below 1 means 1');
});
