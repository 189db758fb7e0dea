// Corporate proxies: with HTTP_PROXY set the client tunnels through it, and
// NO_PROXY is honoured. This file sets process.env, so it has a process to itself.
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import t from 'tap';
import { Agent, EnvHttpProxyAgent } from 'undici';
import { createDispatcher, usesProxy } from '../../src/upstream/dispatcher.js';
import { makeClient, send, startFake, text, TIMEOUTS } from './fixtures/fakes.js';

async function startProxy(t: { teardown(fn: () => unknown): void }): Promise<{ url: string; tunnels: string[] }> {
  const tunnels: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((_req, res) => send(res, 405, 'CONNECT only'));
  server.on('connect', (req, client: Socket, head: Buffer) => {
    const target = req.url ?? '';
    tunnels.push(target);
    const [host, port] = target.split(':');
    const upstream = connect(Number(port), host ?? '', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, tunnels };
}

t.test('usesProxy and createDispatcher', async (t) => {
  t.notOk(usesProxy({}));
  t.notOk(usesProxy({ HTTPS_PROXY: '' }));
  t.ok(usesProxy({ https_proxy: 'http://proxy:3128' }));
  t.ok(usesProxy({ HTTP_PROXY: 'http://proxy:3128' }));
  const direct = createDispatcher({ name: 'x', timeouts: TIMEOUTS, tlsVerify: true, env: {} });
  const proxied = createDispatcher({ name: 'x', timeouts: TIMEOUTS, tlsVerify: false, env: { HTTPS_PROXY: 'http://127.0.0.1:3128', NO_PROXY: 'localhost' } });
  t.ok(direct instanceof Agent);
  t.ok(proxied instanceof EnvHttpProxyAgent);
  await direct.close();
  await proxied.close();
  t.throws(() => createDispatcher({ name: 'x', timeouts: TIMEOUTS, tlsVerify: true, caBundle: '/nonexistent/ca.pem', env: {} }), {
    message: /^upstream x: cannot read CA bundle/,
  });
});

t.test('requests tunnel through HTTP_PROXY, except hosts in NO_PROXY', async (t) => {
  const proxied = await startFake(t, (_req, res) => send(res, 200, 'via proxy'));
  const bypassed = await startFake(t, (_req, res) => send(res, 200, 'direct'));
  const proxy = await startProxy(t);
  const saved = { HTTP_PROXY: process.env.HTTP_PROXY, NO_PROXY: process.env.NO_PROXY };
  process.env.HTTP_PROXY = proxy.url;
  process.env.NO_PROXY = `127.0.0.1:${bypassed.port}`;
  t.teardown(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  const viaProxy = makeClient(t, proxied.url).client;
  const res = await viaProxy.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'x' });
  t.equal(await text(res.body), 'via proxy');
  t.same(proxy.tunnels, [`127.0.0.1:${proxied.port}`], 'tunnelled with CONNECT');

  const direct = makeClient(t, bypassed.url).client;
  const res2 = await direct.request({ method: 'GET', repository: 'a', kind: 'manifests', reference: 'x' });
  t.equal(await text(res2.body), 'direct');
  t.equal(proxy.tunnels.length, 1, 'NO_PROXY host reached directly');
});
