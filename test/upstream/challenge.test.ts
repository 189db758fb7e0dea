// WWW-Authenticate parsing: the headers real registries send, RFC 7235 corner
// cases, and hostile input that must neither throw nor smuggle parameters.
import t from 'tap';
import { findChallenge, MAX_HEADER_LENGTH, parseChallenges, type Challenge } from '../../src/upstream/challenge.js';

type Plain = { scheme: string; params: Record<string, string>; token68?: string };
const plain = (challenges: Challenge[]): Plain[] =>
  challenges.map((c) => ({ scheme: c.scheme, params: { ...c.params }, ...(c.token68 === undefined ? {} : { token68: c.token68 }) }));
const c = (scheme: string, params: Record<string, string> = {}, token68?: string): Plain =>
  token68 === undefined ? { scheme, params } : { scheme, params, token68 };

const table: Array<[string, string | string[] | undefined, Plain[]]> = [
  // What registries send
  [
    'Docker Hub',
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
    [c('bearer', { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' })],
  ],
  [
    'insufficient scope with error',
    'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull",error="insufficient_scope"',
    [c('bearer', { realm: 'https://ghcr.io/token', service: 'ghcr.io', scope: 'repository:a/b:pull', error: 'insufficient_scope' })],
  ],
  ['Distribution htpasswd', 'Basic realm="Registry Realm"', [c('basic', { realm: 'Registry Realm' })]],
  ['unquoted token value', 'Basic realm=registry', [c('basic', { realm: 'registry' })]],
  ['scheme alone', 'Basic', [c('basic')]],
  ['case-insensitive scheme and names', 'BEARER Realm="x", SERVICE="y"', [c('bearer', { realm: 'x', service: 'y' })]],
  // RFC 7235 grammar
  ['spaces around = and commas', 'Bearer  realm = "a" ,  service="b"', [c('bearer', { realm: 'a', service: 'b' })]],
  ['empty list elements', ', ,Bearer realm="a",,, service="b",', [c('bearer', { realm: 'a', service: 'b' })]],
  ['escapes in quoted strings', 'Basic realm="a \\"quoted\\" \\\\ word"', [c('basic', { realm: 'a "quoted" \\ word' })]],
  ['comma inside quotes', 'Bearer realm="a,b", scope="repository:x:pull,push"', [c('bearer', { realm: 'a,b', scope: 'repository:x:pull,push' })]],
  ['empty quoted value', 'Bearer realm=""', [c('bearer', { realm: '' })]],
  [
    'two challenges on one line',
    'Basic realm="simple", Newauth realm="apps", type=1, title="Login to \\"apps\\""',
    [c('basic', { realm: 'simple' }), c('newauth', { realm: 'apps', type: '1', title: 'Login to "apps"' })],
  ],
  ['schemes without params in a list', 'Negotiate, Basic realm="x"', [c('negotiate'), c('basic', { realm: 'x' })]],
  ['token68', 'Negotiate YIIabc+/=, Basic realm="x"', [c('negotiate', {}, 'YIIabc+/='), c('basic', { realm: 'x' })]],
  ['token68 with padding', 'Custom abc==', [c('custom', {}, 'abc==')]],
  ['several header lines', ['Basic realm="a"', 'Bearer realm="b"'], [c('basic', { realm: 'a' }), c('bearer', { realm: 'b' })]],
  ['duplicate parameter: first wins', 'Bearer realm="good", realm="evil"', [c('bearer', { realm: 'good' })]],
  // Absent and hostile input
  ['undefined', undefined, []],
  ['empty', '', []],
  ['only separators', ' , ,\t', []],
  ['parameter without a scheme', 'realm="x"', []],
  ['unterminated quote', 'Bearer realm="https://a, service=b', [c('bearer')]],
  ['a quote closed early leaves junk: stop there', 'Bearer realm="https://a, service="b"', [c('bearer', { realm: 'https://a, service=' })]],
  ['missing comma between params: stop there (as Docker does)', 'Bearer realm="a" service="b"', [c('bearer', { realm: 'a' })]],
  ['backslash at the end', 'Bearer realm="abc\\', [c('bearer')]],
  ['control character in quotes', 'Bearer realm="a\u0000b", service="s"', [c('bearer')]],
  ['newline in quotes', 'Bearer realm="a\r\nX-Injected: 1"', [c('bearer')]],
  ['garbage after a value stops parsing', 'Bearer realm="a"; service="b"', [c('bearer', { realm: 'a' })]],
  ['scheme glued to junk', 'Bearer"realm"', []],
  ['value with = stops parsing', 'Bearer realm=a=b, service="s"', [c('bearer', { realm: 'a' })]],
  ['non-ASCII scheme', 'Bëarer realm="x"', []],
  ['__proto__ as a parameter stays data', 'Bearer __proto__="x", realm="r"', [c('bearer', { ['__proto__']: 'x', realm: 'r' })]],
];

t.test('table', async (t) => {
  for (const [name, input, expected] of table) {
    t.same(plain(parseChallenges(input)), expected, name);
  }
});

t.test('parameters live in a null-prototype object', async (t) => {
  const [bearer] = parseChallenges('Bearer __proto__="x", constructor="y"');
  t.ok(bearer);
  t.equal(Object.getPrototypeOf(bearer?.params), null);
  t.equal(bearer?.params['__proto__'], 'x');
  t.equal(bearer?.params.constructor, 'y');
  t.equal(parseChallenges('Bearer realm="r"')[0]?.params.toString, undefined, 'no inherited names');
});

t.test('oversized and repetitive input', async (t) => {
  t.same(parseChallenges(`Bearer realm="${'a'.repeat(MAX_HEADER_LENGTH)}"`), [], 'longer than the limit');
  const many = Array.from({ length: 100 }, (_, i) => `S${i}`).join(', ');
  t.equal(parseChallenges(many).length, 16, 'challenge count is capped');
  const params = Array.from({ length: 100 }, (_, i) => `p${i}="v"`).join(', ');
  t.equal(Object.keys(parseChallenges(`Bearer ${params}`)[0]?.params ?? {}).length, 32, 'parameter count is capped');
  const started = process.hrtime.bigint();
  parseChallenges(`Bearer realm="${'\\"'.repeat(4000)}`);
  parseChallenges(','.repeat(MAX_HEADER_LENGTH));
  t.ok(process.hrtime.bigint() - started < 200_000_000n, 'linear time on pathological input');
});

t.test('findChallenge', async (t) => {
  const challenges = parseChallenges('Basic realm="a", Bearer realm="b"');
  t.equal(findChallenge(challenges, 'Bearer')?.params.realm, 'b');
  t.equal(findChallenge(challenges, 'basic')?.params.realm, 'a');
  t.equal(findChallenge(challenges, 'digest'), undefined);
});
