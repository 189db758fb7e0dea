// Names, tags, digests and references: the grammars that keep hostile input out of storage paths.
import t from 'tap';
import { digestOf, parseDigest, Digester } from '../../src/registry/digest.js';
import { RegistryError } from '../../src/registry/errors.js';
import { parseRepositoryName, parseTag } from '../../src/registry/names.js';
import { parseReference } from '../../src/registry/reference.js';

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof RegistryError ? err.code : 'not a RegistryError';
  }
};

t.test('repository names', async (t) => {
  for (const good of ['alpine', 'library/alpine', 'a/b/c/d', 'my-org/my_repo', 'a__b', 'a.b-c---d', 'x'.repeat(255)]) {
    t.equal(code(() => parseRepositoryName(good)), undefined, good.slice(0, 40));
  }
  for (const bad of [
    '', 'UPPER', '../etc', 'a/../b', 'a//b', '/a', 'a/', 'a%2Fb', 'a\u0000b', '_layers', 'a/_manifests', 'a..b', '-a', 'a b', 'x'.repeat(256),
  ]) {
    t.equal(code(() => parseRepositoryName(bad)), 'NAME_INVALID', JSON.stringify(bad.slice(0, 40)));
  }
});

t.test('tags', async (t) => {
  for (const good of ['latest', '3.19', 'v1.0.0-rc.1', '_x', 'A'.repeat(128), 'sha256-abc.sig']) t.ok(parseTag(good), good.slice(0, 30));
  for (const bad of ['', '.hidden', '-x', 'a/b', 'a:b', 'A'.repeat(129), '..', 'a%20b']) {
    t.equal(code(() => parseTag(bad)), 'TAG_INVALID', JSON.stringify(bad.slice(0, 30)));
  }
});

t.test('digests', async (t) => {
  const hex = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
  const d = parseDigest(`sha256:${hex}`);
  t.same([d.algorithm, d.hex, d.value], ['sha256', hex, `sha256:${hex}`]);
  t.equal(digestOf('').value, `sha256:${hex}`, 'digest of empty content');
  t.equal(parseDigest(`sha512:${'0'.repeat(128)}`).algorithm, 'sha512');
  for (const bad of [
    'sha256:', `sha256:${hex.slice(1)}`, `sha256:${hex.toUpperCase()}`, `sha256:${hex}0`, 'md5:abc', `sha256:../${hex.slice(3)}`, 'sha256', `:${hex}`,
  ]) {
    t.equal(code(() => parseDigest(bad)), 'DIGEST_INVALID', bad.slice(0, 30));
  }
  const digester = new Digester();
  digester.update(Buffer.from('hello '));
  digester.update(Buffer.from('world'));
  t.equal(digester.digest().value, digestOf('hello world').value, 'streaming digest equals one-shot digest');
  t.equal(digester.size, 11);
});

t.test('references', async (t) => {
  t.equal(parseReference('latest').kind, 'tag');
  t.equal(parseReference(`sha256:${'a'.repeat(64)}`).kind, 'digest');
  t.equal(code(() => parseReference('sha256:zz')), 'DIGEST_INVALID');
  t.equal(code(() => parseReference('bad tag')), 'TAG_INVALID');
});
