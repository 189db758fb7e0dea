/** The CLI: argv and env to config to a running server or a one-shot command. The only place that exits the process. */
import cluster from 'node:cluster';
import { createRequire } from 'node:module';
import { configPathFromEnv, loadConfig, type LoadedConfig } from '../config/index.js';
import { createLogger } from '../observability/logger.js';
import { hostsRepositories, shutdownDeadlineMs, startApp } from '../app.js';
import { describeStorage } from '../storage/open.js';
import { COMMAND_HELP, parseArgs, USAGE } from './args.js';
import { gcCommand } from './gc.js';
import { superviseWorkers } from './workers.js';
import { exportCommand, importCommand, prefetchCommand } from './transfer.js';
import type { Logger } from 'pino';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

/** The configuration every command runs on, as serve reads it; a broken one exits 2. */
async function configure(argPath: string | undefined, logTo?: NodeJS.WritableStream): Promise<{ loaded: LoadedConfig; log: Logger }> {
  // Distribution's REGISTRY_CONFIGURATION_PATH (or STEVEDORE_…) names the file when no argument does.
  const configPath = argPath ?? configPathFromEnv(process.env);
  let loaded;
  try {
    loaded = await loadConfig(configPath === undefined ? { env: process.env } : { path: configPath, env: process.env });
  } catch (err) {
    const notices = (err as { notices?: { level: string; path: string; message: string }[] }).notices;
    process.stderr.write(`stevedore: configuration error in ${configPath ?? '(embedded default)'}\n`);
    if (notices?.length) for (const n of notices) process.stderr.write(`  ${n.level}: ${n.path || '(file)'}: ${n.message}\n`);
    else process.stderr.write(`  ${(err as Error).message}\n`);
    process.exit(2);
  }
  const { config } = loaded;
  // serve logs to stdout (see observability/logger.ts); one-shot commands to stderr,
  // so their own output (gc's lines, progress) stays clean on stdout.
  const log = createLogger({ level: config.log.level, formatter: config.log.formatter, destination: logTo });
  // Workers (http.workers) read the same file: their supervisor has said what there is to say about it.
  if (!cluster.isWorker) for (const notice of loaded.notices) log.warn({ key: notice.path }, notice.message);
  return { loaded, log };
}

async function serve(argPath: string | undefined): Promise<void> {
  const { loaded, log: root } = await configure(argPath);
  const { config } = loaded;
  if (config.http.workers > 1 && cluster.isPrimary) {
    root.info({ version, config: loaded.source, workers: config.http.workers }, 'starting workers');
    // Past the workers' own drain deadline: they end themselves first.
    process.exit(await superviseWorkers(config.http.workers, shutdownDeadlineMs(config.http.drainTimeoutMs) + 2_000, root));
  }
  const log = cluster.isWorker ? root.child({ worker: cluster.worker?.id }) : root;

  const app = await startApp(config, log);
  log.info(
    {
      version,
      config: loaded.source,
      addr: `${app.address.address}:${app.address.port}`,
      storage: describeStorage(config.storage),
      upstream: config.proxy?.url ?? null,
      upstreams: Object.fromEntries(config.upstreams.map((u) => [u.name, { url: u.url, hosts: u.hosts, stored: `${u.namespace}/` }])),
      tls: config.http.tls !== undefined,
      hosted: hostsRepositories(config) ? (config.proxy === undefined && config.upstreams.length === 0 ? ['**'] : config.hosted) : [],
      deletes: config.storage.delete.enabled,
      auth: config.auth === undefined ? 'none' : config.auth.htpasswd !== undefined ? 'htpasswd' : config.auth.token?.issue !== undefined ? 'token (issued here)' : 'token',
    },
    'stevedore listening',
  );
  if (config.auth === undefined) {
    const hosted = hostsRepositories(config);
    const proxied = config.proxy !== undefined || config.upstreams.length > 0;
    const reach = [proxied ? 'pull everything it caches or can fetch with the upstream credentials' : undefined, hosted ? 'push to and pull from its hosted repositories' : undefined].filter(Boolean).join(', and ');
    log.warn(`no auth section: anyone who can reach this port may ${reach}`);
  }

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    const deadlineMs = shutdownDeadlineMs(config.http.drainTimeoutMs);
    log.info({ signal, drainTimeoutMs: config.http.drainTimeoutMs }, 'shutting down');
    // Only a shutdown that hangs past the drain and its margin is a failure; cutting slow
    // downloads at the drain deadline is part of a clean one (exit 0).
    const force = setTimeout(() => {
      log.error({ deadlineMs }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, deadlineMs);
    force.unref();
    app.close().then(
      () => {
        log.info('shut down');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // SIGHUP would end the process; here it reloads http.tls's certificate (a no-op without TLS).
  process.on('SIGHUP', () => void app.reloadTls('SIGHUP'));
}

const fail = (err: unknown): never => {
  process.stderr.write(`stevedore: ${(err as Error).message}\n`);
  process.exit(1);
};

const command = parseArgs(process.argv.slice(2));
switch (command.kind) {
  case 'help':
    process.stdout.write(command.topic === undefined ? USAGE : COMMAND_HELP[command.topic]);
    break;
  case 'version':
    process.stdout.write(`stevedore ${version}\n`);
    break;
  case 'error':
    process.stderr.write(`stevedore: ${command.message}\n\n${USAGE}`);
    process.exit(64);
    break;
  case 'serve':
    await serve(command.configPath).catch(fail);
    break;
  case 'gc':
  case 'prefetch':
  case 'export':
  case 'import': {
    const { loaded, log } = await configure(command.configPath, process.stderr);
    const run = { gc: gcCommand, prefetch: prefetchCommand, export: exportCommand, import: importCommand }[command.kind] as (
      c: typeof command,
      config: LoadedConfig['config'],
      log: Logger,
    ) => Promise<number>;
    process.exit(await run(command, loaded.config, log).catch(fail));
  }
}
