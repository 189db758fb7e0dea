// Lockout: failed logins counted per key in a fixed window of an injected clock.
import t from 'tap';

import { Lockout } from '../../src/auth/lockout.js';

const setup = (attempts = 3, windowMs = 60_000) => {
  const clock = { now: 1_000_000 };
  return { clock, lockout: new Lockout(attempts, windowMs, () => clock.now) };
};

t.test('locked out once the failures reach the limit, until the window ends', async (t) => {
  const { clock, lockout } = setup(3, 60_000);
  const keys = ['addr:192.0.2.1', 'user:alice'];
  t.equal(lockout.retryAfter(keys), 0);
  lockout.fail(keys);
  lockout.fail(keys);
  t.equal(lockout.retryAfter(keys), 0, 'two failures of three allowed');
  lockout.fail(keys);
  t.equal(lockout.retryAfter(keys), 60, 'seconds to the end of the window');
  clock.now += 20_500;
  t.equal(lockout.retryAfter(keys), 40, 'rounded up');
  clock.now += 39_499;
  t.equal(lockout.retryAfter(keys), 1);
  clock.now += 1;
  t.equal(lockout.retryAfter(keys), 0, 'the window is over');
  lockout.fail(keys);
  t.equal(lockout.retryAfter(keys), 0, 'a new window starts at the next failure');
});

t.test('the window is fixed: it starts at the first failure', async (t) => {
  const { clock, lockout } = setup(2, 10_000);
  lockout.fail(['k']);
  clock.now += 9_000;
  lockout.fail(['k']);
  t.equal(lockout.retryAfter(['k']), 1, 'counted from the first failure, not the last');
  clock.now += 1_000;
  t.equal(lockout.retryAfter(['k']), 0);
});

t.test('each key counts on its own; any locked key locks', async (t) => {
  const { lockout } = setup(2);
  lockout.fail(['addr:a', 'user:alice']);
  lockout.fail(['addr:b', 'user:alice']);
  t.ok(lockout.retryAfter(['user:alice']) > 0, 'guessed from two addresses');
  t.equal(lockout.retryAfter(['addr:a']), 0);
  t.equal(lockout.retryAfter(['addr:b', 'user:bob']), 0);
  t.ok(lockout.retryAfter(['addr:c', 'user:alice']) > 0, 'a new address does not help');
  t.equal(lockout.retryAfter([]), 0);
});

t.test("a good login clears the user's count, not the address's", async (t) => {
  const { lockout } = setup(2);
  lockout.fail(['addr:a', 'user:alice']);
  lockout.fail(['addr:a', 'user:bob']);
  t.ok(lockout.retryAfter(['addr:a']) > 0);
  lockout.succeed('user:alice');
  lockout.fail(['user:alice']);
  t.equal(lockout.retryAfter(['user:alice']), 0, 'alice starts again from one');
  t.ok(lockout.retryAfter(['addr:a']) > 0, 'the address stays locked');
  lockout.succeed('user:nobody');
});
