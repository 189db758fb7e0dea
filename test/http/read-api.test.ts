// The read API over HTTP, served from a storage tree written by our own stores:
// manifests, blobs with ranges, pagination, OCI error bodies, and hostile input.
import t from 'tap';
import { request } from 'node:http';
import { pino } from 'pino';
import { createServer } from '../../src/http/server.js';
import { Routing } from '../../src/routing/routes.js';
import { digestOf } from '../../src/registry/digest.js';
import { MediaType } from '../../src/registry/mediatypes.js';
import { parseRepositoryName, parseTag } from '../../src/registry/names.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { LocalRegistry } from '../../src/storage/local.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function send(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

const errorCode = (reply: Reply): string | undefined => {
  const parsed = JSON.parse(reply.body.toString()) as { errors: { code: string; message: string }[] };
  return parsed.errors[0]?.code;
};

t.test('read API', async (t) => {
  const root = t.testdir();
  const registry = new LocalRegistry(new FilesystemDriver(root));
  const { storage } = registry;
  const name = parseRepositoryName('team/app');
  const layer = Buffer.alloc(10_000);
  for (let i = 0; i < layer.length; i++) layer[i] = (i * 7) % 251;
  const layerDesc = await storage.blobs.put(layer);
  await storage.layers.link(name, layerDesc.digest);
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  const configDesc = await storage.blobs.put(config);
  await storage.layers.link(name, configDesc.digest);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDesc.digest.value, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDesc.digest.value, size: layer.length }],
    }),
  );
  const manifestDesc = await storage.blobs.put(manifest);
  await storage.revisions.link(name, manifestDesc.digest);
  for (const tag of ['a', 'b', 'c', 'd', 'e']) await storage.tags.tag(name, parseTag(tag), manifestDesc.digest);
  for (const repo of ['alpha', 'team/app', 'zeta/one', 'zeta/two']) {
    if (repo !== 'team/app') await storage.revisions.link(parseRepositoryName(repo), manifestDesc.digest);
  }

  const server = createServer({ routing: new Routing({ upstreams: [], local: registry, unknownNs: 'reject' }), log: pino({ level: 'silent' }), accessLog: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as { port: number };

  t.test('base endpoint', async (t) => {
    const reply = await send(port, 'GET', '/v2/');
    t.equal(reply.status, 200);
    t.equal(reply.headers['docker-distribution-api-version'], 'registry/2.0');
  });

  t.test('manifest by tag and digest, GET and HEAD agree', async (t) => {
    const get = await send(port, 'GET', '/v2/team/app/manifests/a', { Accept: MediaType.OciManifest });
    t.equal(get.status, 200);
    t.equal(get.headers['content-type'], MediaType.OciManifest);
    t.equal(get.headers['docker-content-digest'], manifestDesc.digest.value);
    t.equal(get.headers.etag, `"${manifestDesc.digest.value}"`);
    t.same(get.body, manifest, 'stored bytes served exactly');
    const head = await send(port, 'HEAD', `/v2/team/app/manifests/${manifestDesc.digest.value}`);
    t.equal(head.status, 200);
    for (const h of ['content-type', 'content-length', 'docker-content-digest']) t.equal(head.headers[h], get.headers[h], h);
    t.equal(head.body.length, 0);
    const cached = await send(port, 'GET', '/v2/team/app/manifests/a', { 'If-None-Match': `"${manifestDesc.digest.value}"` });
    t.equal(cached.status, 304);
  });

  t.test('manifest the client cannot accept is refused, not converted', async (t) => {
    const reply = await send(port, 'GET', '/v2/team/app/manifests/a', { Accept: MediaType.DockerSchema1Signed });
    t.equal(reply.status, 404);
    t.equal(errorCode(reply), 'MANIFEST_UNKNOWN');
    t.match(reply.body.toString(), /Accept header does not list/);
  });

  t.test('blobs: whole, ranges, HEAD, repository scoping', async (t) => {
    const path = `/v2/team/app/blobs/${layerDesc.digest.value}`;
    const whole = await send(port, 'GET', path);
    t.equal(whole.status, 200);
    t.same(whole.body, layer);
    t.equal(whole.headers['accept-ranges'], 'bytes');
    t.equal(whole.headers['docker-content-digest'], layerDesc.digest.value);
    const part = await send(port, 'GET', path, { Range: 'bytes=100-199' });
    t.equal(part.status, 206);
    t.equal(part.headers['content-range'], `bytes 100-199/${layer.length}`);
    t.same(part.body, layer.subarray(100, 200));
    const suffix = await send(port, 'GET', path, { Range: 'bytes=-10' });
    t.same(suffix.body, layer.subarray(layer.length - 10));
    const beyond = await send(port, 'GET', path, { Range: 'bytes=10000-' });
    t.equal(beyond.status, 416);
    t.equal(beyond.headers['content-range'], `bytes */${layer.length}`);
    t.equal(errorCode(beyond), 'RANGE_INVALID');
    const absurd = await send(port, 'GET', path, { Range: 'bytes=99999999999999999999999-1' });
    t.equal(absurd.status, 416);
    const head = await send(port, 'HEAD', path);
    t.equal(head.status, 200);
    t.equal(head.headers['content-length'], String(layer.length));
    const elsewhere = await send(port, 'GET', `/v2/alpha/blobs/${layerDesc.digest.value}`);
    t.equal(elsewhere.status, 404, 'a blob is visible only where it is linked');
    t.equal(errorCode(elsewhere), 'BLOB_UNKNOWN');
  });

  t.test('tags list and catalog paginate with Link headers', async (t) => {
    const all = await send(port, 'GET', '/v2/team/app/tags/list');
    t.same(JSON.parse(all.body.toString()), { name: 'team/app', tags: ['a', 'b', 'c', 'd', 'e'] });
    const first = await send(port, 'GET', '/v2/team/app/tags/list?n=2');
    t.same(JSON.parse(first.body.toString()).tags, ['a', 'b']);
    t.equal(first.headers.link, '</v2/team/app/tags/list?n=2&last=b>; rel="next"');
    const next = await send(port, 'GET', '/v2/team/app/tags/list?n=2&last=b');
    t.same(JSON.parse(next.body.toString()).tags, ['c', 'd']);
    const end = await send(port, 'GET', '/v2/team/app/tags/list?n=2&last=d');
    t.same(JSON.parse(end.body.toString()).tags, ['e']);
    t.equal(end.headers.link, undefined, 'no Link on the last page');
    const catalog = await send(port, 'GET', '/v2/_catalog?n=3');
    t.same(JSON.parse(catalog.body.toString()).repositories, ['alpha', 'team/app', 'zeta/one']);
    t.equal(catalog.headers.link, '</v2/_catalog?n=3&last=zeta%2Fone>; rel="next"');
    const rest = await send(port, 'GET', '/v2/_catalog?n=3&last=zeta%2Fone');
    t.same(JSON.parse(rest.body.toString()).repositories, ['zeta/two']);
    const bad = await send(port, 'GET', '/v2/_catalog?n=-1');
    t.equal(bad.status, 400);
    t.equal(errorCode(bad), 'PAGINATION_NUMBER_INVALID');
  });

  t.test('errors are OCI JSON bodies with the right status', async (t) => {
    const table: [string, string, number, string][] = [
      ['GET', '/v2/nope/manifests/latest', 404, 'MANIFEST_UNKNOWN'],
      ['GET', '/v2/nope/tags/list', 404, 'NAME_UNKNOWN'],
      ['GET', `/v2/team/app/blobs/${digestOf('absent').value}`, 404, 'BLOB_UNKNOWN'],
      ['GET', '/v2/team/app/blobs/sha256:1234', 400, 'DIGEST_INVALID'],
      ['GET', '/v2/team/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e', 400, 'DIGEST_INVALID'],
      ['GET', '/v2/team/app/manifests/sha256:xyz', 400, 'DIGEST_INVALID'],
      ['GET', '/v2/team/app/manifests/-bad', 400, 'TAG_INVALID'],
      ['GET', '/v2/Team/app/manifests/a', 400, 'NAME_INVALID'],
      ['GET', '/v2/../../etc/passwd/manifests/a', 400, 'NAME_INVALID'],
      ['GET', '/v2/team%2F..%2F..%2Fetc/manifests/a', 400, 'NAME_INVALID'],
      ['GET', '/v2/team/..%2f/blobs/sha256:' + 'a'.repeat(64), 400, 'NAME_INVALID'],
      ['GET', `/v2/${'a'.repeat(256)}/manifests/latest`, 400, 'NAME_INVALID'],
      ['GET', `/v2/${'a/'.repeat(1100)}x/manifests/latest`, 404, 'NOT_FOUND'],
      ['GET', '/v2/team/app/nothing', 404, 'NOT_FOUND'],
      ['GET', '/elsewhere', 404, 'NOT_FOUND'],
      ['PUT', '/v2/team/app/manifests/a', 405, 'UNSUPPORTED'],
      ['POST', '/v2/team/app/blobs/uploads/', 405, 'UNSUPPORTED'],
      ['DELETE', `/v2/team/app/blobs/${layerDesc.digest.value}`, 405, 'UNSUPPORTED'],
    ];
    for (const [method, path, status, code] of table) {
      const reply = await send(port, method, path);
      t.equal(reply.status, status, `${method} ${path.slice(0, 60)} status`);
      t.equal(reply.headers['content-type'], 'application/json; charset=utf-8');
      t.equal(errorCode(reply), code, `${method} ${path.slice(0, 60)} code`);
    }
    const head = await send(port, 'HEAD', '/v2/nope/manifests/latest');
    t.equal(head.status, 404, 'HEAD errors keep their status');
    t.equal(head.body.length, 0, 'and send no body');
  });

  t.test('the server survives all of that', async (t) => {
    t.equal((await send(port, 'GET', '/v2/')).status, 200);
  });
});
