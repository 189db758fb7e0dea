/**
 * deploy/ must stay true to the code: every Stevedore config in it loads with
 * no notice, the Dockerfile keeps registry:2's paths and port, the Kubernetes
 * probes and scrape point at endpoints the server has, compose wires Redis,
 * the systemd unit is hardened and verifies, and the client snippets are the
 * README's. Nothing is built or started (no Docker daemon here).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, delimiter, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import t, { type Test } from 'tap';
import { parseAllDocuments } from 'yaml';

import { parseConfig, type StevedoreConfig } from '../src/config/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

/** Parsed YAML, JSON and TOML, read loosely: a wrong shape fails an assertion, not the compiler. */
type Obj = Record<string, any>;

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [relative(ROOT, path)];
  });
}
const FILES = walk(DEPLOY);

/** Every YAML document of a file, failing on any parse error. */
function yamlDocs(path: string): Obj[] {
  const docs = parseAllDocuments(read(path));
  if (!Array.isArray(docs)) return [];
  for (const doc of docs) if (doc.errors.length > 0) throw new Error(`${path}: ${doc.errors.map((e) => e.message).join('; ')}`);
  return docs.map((doc) => doc.toJS() as Obj);
}
const yamlDoc = (path: string): Obj => yamlDocs(path)[0] ?? {};

/** A Stevedore config that must load with no notice at all, not even a warning. */
function stevedoreConfig(t: Test, text: string, source: string, env: NodeJS.ProcessEnv = {}): StevedoreConfig {
  const { config, notices } = parseConfig(text, env, source);
  t.same(notices, [], `${source} loads without notices`);
  return config;
}

const OPERATIONS = read('src/http/operations.ts');
/** The path is one the server routes (src/http/operations.ts), not one a manifest made up. */
const served = (path: string) => OPERATIONS.includes(`path === '${path}'`);

// ---------------------------------------------------------------- Dockerfile

interface Instruction { op: string; args: string; stage: number }

/** Instructions with continuations joined and comments dropped; stage is the index of the FROM they follow. */
function dockerfile(text: string): Instruction[] {
  const logical = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  let stage = -1;
  return logical.map((line) => {
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    if (op.toUpperCase() === 'FROM') stage += 1;
    return { op: op.toUpperCase(), args, stage };
  });
}

const DOCKERFILE = dockerfile(read('deploy/Dockerfile'));
const FINAL = Math.max(...DOCKERFILE.map((i) => i.stage));
const final = (op: string) => DOCKERFILE.filter((i) => i.stage === FINAL && i.op === op);
/** ENV of the final stage, both `K=V K2=V2` and `K V` forms. */
const IMAGE_ENV: Record<string, string> = Object.fromEntries(
  final('ENV').flatMap((i) => (i.args.includes('=') ? [...i.args.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1] ?? '', m[2] ?? '']) : [i.args.split(/\s+/, 2)])),
);

t.test('Dockerfile: multi-stage, slim, non-root, registry:2 paths', async (t) => {
  const froms = DOCKERFILE.filter((i) => i.op === 'FROM');
  t.ok(froms.length >= 2, 'several stages');
  const arg = DOCKERFILE.find((i) => i.op === 'ARG' && i.args.startsWith('NODE_IMAGE='))?.args ?? '';
  t.match(arg, /=node:20[\w.-]*-slim$/, 'a node 20 slim base');
  const run = (stage: number) => DOCKERFILE.filter((i) => i.stage === stage && i.op === 'RUN').map((i) => i.args).join('\n');
  t.ok(froms.some((_, s) => /npm run build/.test(run(s))), 'one stage compiles');
  t.ok(froms.some((_, s) => /npm ci --omit=dev --ignore-scripts/.test(run(s))), 'one stage installs production dependencies only');
  t.notMatch(run(FINAL), /npm/, 'the final stage runs no npm');

  const copies = final('COPY').map((i) => i.args);
  for (const [what, pattern] of [
    ['node_modules', /--from=\w+ \S*node_modules/],
    ['dist', /--from=\w+ \S*dist/],
    ['bin', /^bin /],
    ['package.json', /^package\.json /],
    ['ui', /^ui /],
  ] as const) t.ok(copies.some((c) => pattern.test(c)), `the final stage has ${what}`);
  t.ok(copies.some((c) => /^deploy\/config\.yml \/etc\/docker\/registry\/config\.yml$/.test(c)), 'config.yml at registry:2 path');
  t.equal(IMAGE_ENV.REGISTRY_CONFIGURATION_PATH, '/etc/docker/registry/config.yml', 'REGISTRY_CONFIGURATION_PATH names it');
  t.same(final('CMD').map((i) => JSON.parse(i.args) as unknown), [['serve']], 'CMD serves the file REGISTRY_CONFIGURATION_PATH names');

  const user = final('USER')[0]?.args ?? 'root';
  t.notMatch(user, /^(root|0)(:|$)/, `runs as ${user}, not root`);
  t.same(final('VOLUME').map((i) => i.args), ['/var/lib/registry']);
  t.same(final('EXPOSE').map((i) => i.args), ['5000']);
  t.match(final('HEALTHCHECK')[0]?.args ?? '', /CMD .*http:\/\/127\.0\.0\.1:5000\/healthz/, 'the healthcheck GETs /healthz');
  t.ok(served('/healthz'), '/healthz is routed');

  // The entrypoint makes `docker run image /some/config.yml` serve it, as registry:2 does.
  const entry = read('deploy/docker-entrypoint.sh');
  t.match(entry, /\*\.yml \| \*\.yaml \| \*\.json\) set -- serve "\$@"/);
  t.match(entry, /exec node --max-semi-space-size=4 \/app\/bin\/stevedore "\$@"/);
  t.ok(statSync(join(DEPLOY, 'docker-entrypoint.sh')).mode & 0o111, 'the entrypoint is executable');

  // Every file the build copies from the context exists and is not ignored.
  const ignored = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const sources = DOCKERFILE.filter((i) => i.op === 'COPY' && !i.args.includes('--from='))
    .flatMap((i) => i.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1));
  for (const source of sources) {
    t.notOk(ignored.includes(source.split('/')[0] ?? ''), `${source} is not in .dockerignore`);
    t.ok(existsSync(join(ROOT, source)), `${source} exists`);
  }
});

t.test('Dockerfile: hadolint', { skip: onPath('hadolint') ? false : 'hadolint is not on PATH' }, async (t) => {
  t.doesNotThrow(() => execFileSync('hadolint', [join(DEPLOY, 'Dockerfile')], { encoding: 'utf8', timeout: 30_000 }));
});

t.test('the image config: a Docker Hub mirror on the volume and the exposed port', async (t) => {
  const config = stevedoreConfig(t, read('deploy/config.yml'), 'deploy/config.yml', IMAGE_ENV);
  t.equal(config.proxy?.url, 'https://registry-1.docker.io');
  t.equal(config.storage.filesystem.rootdirectory, '/var/lib/registry');
  t.equal(config.http.port, 5000);
  t.equal(config.metadata.store, 'file');
  t.match(config.metadata.path ?? '', /^\/var\/lib\/registry\/stevedore\//, 'metadata on the volume, beside the layout');
});

// ---------------------------------------------------------------- YAML, compose

t.test('every YAML file in deploy/ parses', async (t) => {
  const yamls = FILES.filter((f) => /\.ya?ml$/.test(f));
  t.ok(yamls.length >= 9);
  for (const file of yamls) t.doesNotThrow(() => yamlDocs(file), file);
});

t.test('compose: Stevedore with Redis for its metadata', async (t) => {
  const { services, volumes } = yamlDoc('deploy/compose.yaml');
  const stevedore = services.stevedore as Obj;
  t.same(stevedore.build, { context: '..', dockerfile: 'deploy/Dockerfile' });
  t.ok(existsSync(join(DEPLOY, stevedore.build.context, stevedore.build.dockerfile)));
  t.ok((stevedore.ports as string[]).includes('5000:5000'));

  const mounts = (stevedore.volumes as string[]).map((v) => v.split(':'));
  const configMount = mounts.find(([, target]) => target === '/etc/docker/registry/config.yml');
  t.ok(configMount, 'a config at registry:2 path');
  const configFile = join('deploy', configMount?.[0] ?? '');
  const config = stevedoreConfig(t, read(configFile), configFile, { ...IMAGE_ENV, ...(stevedore.environment as Obj | undefined) });
  const data = mounts.find(([, target]) => target === config.storage.filesystem.rootdirectory);
  t.ok(data && data[0] !== undefined && data[0] in volumes, 'storage on a named volume');

  t.equal(config.metadata.store, 'redis');
  const redisHost = new URL(config.metadata.url ?? '').hostname;
  t.ok(redisHost in services, `the metadata URL names the ${redisHost} service`);
  t.match(services[redisHost].image, /^redis:/);
  t.equal(stevedore.depends_on?.[redisHost]?.condition, 'service_healthy');
  t.ok(services[redisHost].healthcheck, 'redis has a healthcheck to wait for');
});

// ---------------------------------------------------------------- Kubernetes

t.test('kubernetes: probes, service and scrape point at real endpoints', async (t) => {
  const dir = 'deploy/kubernetes';
  const kustomization = yamlDoc(`${dir}/kustomization.yaml`);
  const manifests = FILES.filter((f) => f.startsWith(`${dir}/`) && f.endsWith('.yaml') && !f.endsWith('kustomization.yaml'));
  t.same([...(kustomization.resources as string[])].sort(), manifests.map((f) => relative(dir, f)).sort(), 'kustomization lists every manifest');

  const byKind = new Map(manifests.flatMap((f) => yamlDocs(f)).map((doc) => [doc.kind as string, doc]));
  const deployment = byKind.get('Deployment') ?? {};
  const service = byKind.get('Service') ?? {};
  const monitor = byKind.get('ServiceMonitor') ?? {};
  const configMap = byKind.get('ConfigMap') ?? {};
  const pvc = byKind.get('PersistentVolumeClaim') ?? {};
  for (const doc of [deployment, service, monitor, configMap, pvc]) t.ok(doc.apiVersion && doc.metadata?.name, `${doc.kind} is a manifest`);

  const pod = deployment.spec.template.spec as Obj;
  const labels = deployment.spec.template.metadata.labels as Obj;
  t.match(labels, deployment.spec.selector.matchLabels, 'the Deployment selects its pods');
  t.match(labels, service.spec.selector, 'the Service selects the pods');
  t.match(service.metadata.labels, monitor.spec.selector.matchLabels, 'the ServiceMonitor selects the Service');
  t.equal(pod.enableServiceLinks, false, 'no STEVEDORE_* service-link variables to be read as configuration');

  const container = pod.containers[0] as Obj;
  const ports = container.ports as Obj[];
  const containerPort = (ref: unknown) => ports.find((p) => p.name === ref || p.containerPort === ref)?.containerPort as number | undefined;
  const servicePort = (service.spec.ports as Obj[])[0] ?? {};
  const target = containerPort(servicePort.targetPort);
  t.ok(target, `the Service targets container port ${target}`);
  for (const [probe, path] of [['startupProbe', '/healthz'], ['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
    const get = container[probe]?.httpGet as Obj | undefined;
    t.equal(get?.path, path, `${probe} GETs ${path}`);
    t.equal(containerPort(get?.port), target, `${probe} on the port the Service targets`);
    t.ok(served(path), `${path} is routed`);
  }
  t.ok(container.resources?.requests?.cpu && container.resources?.requests?.memory && container.resources?.limits?.memory, 'resources set');
  t.equal(pod.securityContext.runAsNonRoot, true);

  const endpoint = (monitor.spec.endpoints as Obj[])[0] ?? {};
  t.equal(endpoint.path, '/metrics');
  t.ok(served('/metrics'), '/metrics is routed');
  t.ok((service.spec.ports as Obj[]).some((p) => p.name === endpoint.port), `the scraped port ${endpoint.port} is a Service port`);

  const config = stevedoreConfig(t, configMap.data['config.yml'], 'ConfigMap config.yml', IMAGE_ENV);
  t.equal(config.http.port, target, 'the config listens on the container port');
  t.ok(config.operations.metrics, 'metrics on the main port');
  const volume = (name: string) => (pod.volumes as Obj[]).find((v) => v.name === name) ?? {};
  const mount = (path: string) => (container.volumeMounts as Obj[]).find((m) => m.mountPath === path) ?? {};
  t.equal(volume(mount('/etc/docker/registry').name).configMap?.name, configMap.metadata.name, 'the ConfigMap at registry:2 path');
  t.equal(volume(mount(config.storage.filesystem.rootdirectory).name).persistentVolumeClaim?.claimName, pvc.metadata.name, 'storage on the PVC');
  t.ok(config.metadata.path?.startsWith(`${config.storage.filesystem.rootdirectory}/`), 'metadata on the PVC');
});

// ---------------------------------------------------------------- systemd

/** `[Section]` → key → every value assigned, in order. */
function unit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current = new Map<string, string[]>();
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(.+)\]$/.exec(line)?.[1];
    if (section !== undefined) sections.set(section, (current = new Map()));
    else {
      const [key = '', ...rest] = line.split('=');
      current.set(key, [...(current.get(key) ?? []), rest.join('=')]);
    }
  }
  return sections;
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, command)));
}

const UNIT_FILE = join(DEPLOY, 'systemd', 'stevedore.service');

t.test('systemd: hardened, and writing only to the storage', async (t) => {
  const service = unit(readFileSync(UNIT_FILE, 'utf8')).get('Service') ?? new Map<string, string[]>();
  const last = (key: string) => service.get(key)?.at(-1);
  t.equal(last('DynamicUser'), 'yes');
  t.equal(last('ProtectSystem'), 'strict');
  for (const key of ['ProtectHome', 'PrivateTmp', 'PrivateDevices', 'NoNewPrivileges']) t.equal(last(key), 'yes', key);
  t.equal(last('CapabilityBoundingSet'), '', 'no capabilities');

  const exec = (last('ExecStart') ?? '').split(/\s+/);
  t.same(exec.slice(0, 4), ['node', '--max-semi-space-size=4', '/opt/stevedore/bin/stevedore', 'serve']);
  t.equal(exec[4], '/etc/stevedore/config.yml');
  const config = stevedoreConfig(t, read('deploy/systemd/config.yml'), 'deploy/systemd/config.yml', { NODE_ENV: 'production' });
  const root = config.storage.filesystem.rootdirectory;
  const writable = (service.get('ReadWritePaths') ?? []).flatMap((v) => v.split(/\s+/));
  t.ok(writable.includes(root), `ReadWritePaths has ${root}`);
  t.equal(`/var/lib/${last('StateDirectory')}`, root, 'the StateDirectory is the storage');
  t.ok(config.metadata.path?.startsWith(`${root}/`), 'metadata inside the writable storage');
});

t.test('systemd: systemd-analyze verify', { skip: onPath('systemd-analyze') ? false : 'systemd-analyze is not on PATH' }, async (t) => {
  // verify exits non-zero for a unit that cannot run, but only warns (exit 0) about a
  // value it ignores, such as a misspelt ProtectSystem=: both count as failures here.
  const result = spawnSync('systemd-analyze', ['verify', UNIT_FILE], { encoding: 'utf8', timeout: 60_000 });
  t.equal(result.status, 0, 'systemd-analyze verify exits 0');
  t.equal(result.stderr.trim(), '', 'and warns about nothing');
});

// ---------------------------------------------------------------- client snippets

/**
 * The TOML the snippets use, and no more: tables, arrays of tables, quoted
 * keys, strings, booleans, integers and arrays of strings. Anything else throws,
 * so a snippet cannot drift into TOML this check does not read.
 */
function toml(text: string): Obj {
  const root: Obj = {};
  let table = root;
  const key = (raw: string) => [...raw.matchAll(/"([^"]*)"|([\w-]+)/g)].map((m) => m[1] ?? m[2] ?? '');
  const descend = (keys: string[], arrayTable: boolean) => {
    let node = root;
    keys.forEach((k, i) => {
      const lastKey = i === keys.length - 1;
      if (lastKey && arrayTable) {
        const list = (node[k] ??= []) as Obj[];
        list.push({});
        node = list.at(-1) as Obj;
      } else {
        const child = node[k] ?? (node[k] = {});
        node = Array.isArray(child) ? (child.at(-1) as Obj) : (child as Obj);
      }
    });
    return node;
  };
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^(\[\[?)(.+?)\]\]?$/.exec(line);
    const pair = /^([\w-]+|"[^"]*")\s*=\s*(.+)$/.exec(line);
    if (header) table = descend(key(header[2] ?? ''), header[1] === '[[');
    else if (pair) table[key(pair[1] ?? '')[0] ?? ''] = tomlValue(pair[2] ?? '', n + 1);
    else throw new Error(`line ${n + 1}: not TOML this check reads: ${line}`);
  }
  return root;
}
function tomlValue(raw: string, line: number): unknown {
  const value = raw.replace(/\s+#.*$/, '').trim();
  if (/^"[^"\\]*"$/.test(value)) return value.slice(1, -1);
  if (value === 'true' || value === 'false') return value === 'true';
  if (/^-?\d+$/.test(value)) return Number(value);
  if (/^\[\s*("[^"\\]*"\s*,\s*)*("[^"\\]*"\s*)?\]$/.test(value)) return [...value.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
  throw new Error(`line ${line}: a value this check does not read: ${value}`);
}

const README = read('README.md');
const blocks = (lang: string) => [...README.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1] ?? '');

t.test('the minimal TOML reader refuses what it does not read', async (t) => {
  t.throws(() => toml('a = 1.5'), /a value this check does not read/);
  t.throws(() => toml('a.b = "x"'), /not TOML this check reads/);
  t.same(toml('[[r]]\nx = "1"\n[[r.m]]\ny = true\n[[r]]\nx = "2"'), { r: [{ x: '1', m: [{ y: true }] }, { x: '2' }] });
});

t.test('containerd: hosts.toml per registry, as in the README', async (t) => {
  // The README's first TOML block holds one file per registry, each after a `# /etc/containerd/certs.d/<registry>/hosts.toml` line.
  const readme = new Map<string, Obj>();
  for (const part of (blocks('toml')[0] ?? '').split(/^(?=# \/etc\/containerd\/certs\.d\/)/m)) {
    const registry = /^# \/etc\/containerd\/certs\.d\/([^/]+)\/hosts\.toml/.exec(part)?.[1];
    if (registry !== undefined) readme.set(registry, toml(part));
  }
  const hostsFiles = FILES.filter((f) => /^deploy\/containerd\/certs\.d\/[^/]+\/hosts\.toml$/.test(f));
  t.same(hostsFiles.map((f) => f.split('/')[3]).sort(), [...readme.keys()].sort(), 'the registries the README shows');
  for (const file of hostsFiles) {
    const parsed = toml(read(file));
    t.same(parsed, readme.get(file.split('/')[3] ?? ''), `${file} is the README's`);
    t.match(parsed.server, /^https:\/\//);
    for (const host of Object.values(parsed.host as Obj)) t.same(host.capabilities, ['pull', 'resolve']);
  }
  const config = toml(read('deploy/containerd/config.toml'));
  t.equal(config.plugins?.['io.containerd.grpc.v1.cri']?.registry?.config_path, '/etc/containerd/certs.d', 'config_path as the README says');
});

t.test('docker: daemon.json is the README\'s', async (t) => {
  const daemon = JSON.parse(read('deploy/docker/daemon.json')) as Obj;
  const readme = blocks('json').map((b) => JSON.parse(b) as Obj).find((b) => 'registry-mirrors' in b);
  t.same(daemon, readme);
  t.ok((daemon['registry-mirrors'] as string[]).every((u) => /^https?:\/\/[^/]+$/.test(u)), 'mirrors are root URLs');
});

t.test('podman: registries.conf is the README\'s', async (t) => {
  const conf = toml(read('deploy/podman/registries.conf'));
  const readme = blocks('toml').map((b) => toml(b)).find((b) => 'registry' in b);
  t.same(conf, readme);
  t.same((conf.registry as Obj[]).map((r) => r.location), ['docker.io', 'ghcr.io']);
});

t.test('deploy/README.md names every file here, and the top-level README points at it', async (t) => {
  const guide = read('deploy/README.md');
  for (const file of FILES.filter((f) => f !== 'deploy/README.md')) t.ok(guide.includes(basename(file)), `${file} is described`);
  t.match(README, /^## Deploy$/m);
  t.match(README, /\(deploy\/(README\.md)?\)/);
});

t.test('every launcher runs node with the same flags (bin/stevedore explains them)', async (t) => {
  const flags = '--max-semi-space-size=4';
  t.match(read('bin/stevedore').split('\n')[0], `#!/usr/bin/env -S node ${flags}`, 'the shebang');
  const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
  t.match(pkg.scripts.start, `node ${flags} bin/stevedore serve`, 'npm start');
  t.match(read('deploy/docker-entrypoint.sh'), `exec node ${flags} /app/bin/stevedore`, 'the image');
  t.match(read('deploy/systemd/stevedore.service'), `ExecStart=node ${flags} /opt/stevedore/bin/stevedore`, 'the systemd unit');
  t.match(read('bench/lib/registries.mjs'), `STEVEDORE_NODE_FLAGS = ['${flags}']`, 'the benchmarks measure what is shipped');
});
