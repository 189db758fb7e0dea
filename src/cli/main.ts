/** The CLI: argv and env to config to a running server. The only place that exits the process. */
import { createRequire } from 'node:module';
import { configPathFromEnv, loadConfig } from '../config/index.js';
import { createLogger } from '../observability/logger.js';
import { startApp } from '../app.js';
import { parseArgs, USAGE } from './args.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

async function serve(argPath: string | undefined): Promise<void> {
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
  const log = createLogger({ level: config.log.level, formatter: config.log.formatter });
  for (const notice of loaded.notices) log.warn({ key: notice.path }, notice.message);

  const app = await startApp(config, log);
  log.info(
    {
      version,
      config: loaded.source,
      addr: `${app.address.address}:${app.address.port}`,
      storage: config.storage.filesystem.rootdirectory,
      upstream: config.proxy?.url ?? null,
      upstreams: Object.fromEntries(config.upstreams.map((u) => [u.name, { url: u.url, hosts: u.hosts, stored: `${u.namespace}/` }])),
      tls: config.http.tls !== undefined,
    },
    'stevedore listening',
  );

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

const command = parseArgs(process.argv.slice(2));
switch (command.kind) {
  case 'help':
    process.stdout.write(USAGE);
    break;
  case 'version':
    process.stdout.write(`stevedore ${version}\n`);
    break;
  case 'error':
    process.stderr.write(`stevedore: ${command.message}\n\n${USAGE}`);
    process.exit(64);
    break;
  case 'serve':
    await serve(command.configPath).catch((err: unknown) => {
      process.stderr.write(`stevedore: ${(err as Error).message}\n`);
      process.exit(1);
    });
}
