/** Command-line parsing: `stevedore serve [--config] [config.yml]`, `--help`, `--version`. */

export type Command =
  | { kind: 'help'; topic?: SubcommandName }
  | { kind: 'version' }
  | { kind: 'serve'; configPath?: string }
  | { kind: 'gc'; configPath?: string; dryRun: boolean; deleteUntagged: boolean }
  | { kind: 'prefetch'; configPath?: string; images: string[]; file?: string; platforms: string[]; allPlatforms: boolean }
  | { kind: 'export'; configPath?: string; images: string[]; output: string; referrers: boolean }
  | { kind: 'import'; configPath?: string; bundle: string }
  | { kind: 'error'; message: string };

export type SubcommandName = 'serve' | 'gc' | 'prefetch' | 'export' | 'import';

export const USAGE = `Usage: stevedore <command> [options]

A pull-through caching proxy for container registries, and a registry for
repositories of its own (hosted: push, delete), byte-compatible with CNCF
Distribution (registry:2) storage and configuration.

Commands:
  serve [--config] [config.yml]   Run the registry. Reads a Distribution
                                  config.yml (version 0.1) with Stevedore's
                                  extensions; without one, the embedded
                                  default: filesystem storage under ./data,
                                  in-memory metadata, Docker Hub upstream,
                                  port 5000. Several upstreams (upstreams:
                                  in config.yml) are reached by containerd's
                                  ?ns=<host> or a /v2/<host>/… path prefix.
                                  hosted: patterns name repositories pushed
                                  here; without upstreams all are hosted.
                                  Open to everyone unless auth: is set
                                  (htpasswd, tokens; access: rules).
  gc [--dry-run] [--delete-untagged] [config.yml]
                                  Remove blobs no linked manifest references
                                  (safe while a server runs on the storage).
  prefetch IMAGE… | --file LIST   Warm the cache through the upstreams.
  export IMAGE… -o bundle.tar     Cached images as an OCI layout in a tar.
  import bundle.tar [config.yml]  Load a bundle into the storage.
  help [COMMAND]                  Show this help, or a command's.
  version                         Print the version.

Every command reads the configuration as serve does: --config FILE (or the
positional config.yml where a command takes one), else
REGISTRY_CONFIGURATION_PATH, else the embedded default.

Options:
  -c, --config <file>   Configuration file (same as the positional argument).
  -h, --help            Show this help.
  -v, --version         Print the version.

Environment:
  REGISTRY_<PATH>, STEVEDORE_<PATH>   Override a config key, Distribution style:
                                      REGISTRY_HTTP_ADDR=:5001,
                                      REGISTRY_PROXY_REMOTEURL=https://ghcr.io.
                                      (upstreams.<name>.* only in the file.)
                                      STEVEDORE_ wins over REGISTRY_.
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY   Outbound proxy for upstream requests.

Signals:
  SIGTERM, SIGINT   Stop accepting, finish responses within http.draintimeout, exit 0.
  SIGHUP            Reload the TLS certificate and key (also done when they change).
                    With http.workers above 1, the process started is their supervisor:
                    it passes both on to every worker and exits once they all stopped.

Configuration reference: docs/configuration.md
`;

interface Spec {
  /** Boolean flags, as written (`--dry-run`). */
  flags: readonly string[];
  /** Options taking a value; repeatable ones collect every value. */
  options: readonly string[];
  /** How many positional arguments at most (Infinity: any). */
  positionals: number;
}

interface Parsed {
  flags: Set<string>;
  options: Map<string, string[]>;
  positionals: string[];
}

const SPECS: Readonly<Record<SubcommandName, Spec>> = {
  serve: { flags: [], options: ['--config'], positionals: 1 },
  gc: { flags: ['--dry-run', '--delete-untagged'], options: ['--config'], positionals: 1 },
  prefetch: { flags: ['--all-platforms'], options: ['--config', '--file', '--platform'], positionals: Infinity },
  export: { flags: ['--referrers'], options: ['--config', '--output'], positionals: Infinity },
  import: { flags: [], options: ['--config'], positionals: 2 },
};

/** Distribution's garbage-collect takes -d and -m. */
const SHORT: Readonly<Record<string, string>> = { '-c': '--config', '-o': '--output', '-f': '--file', '-d': '--dry-run', '-m': '--delete-untagged' };

function parseCommand(name: SubcommandName, args: string[]): Parsed | Command {
  const spec = SPECS[name];
  const parsed: Parsed = { flags: new Set(), options: new Map(), positionals: [] };
  while (args.length > 0) {
    let arg = args.shift() as string;
    if (arg === '-h' || arg === '--help') return { kind: 'help', topic: name };
    if (arg === '--') {
      parsed.positionals.push(...args.splice(0));
      break;
    }
    let value: string | undefined;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    if (eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    arg = SHORT[arg] ?? arg;
    if (spec.flags.includes(arg)) {
      if (value !== undefined) return { kind: 'error', message: `${arg} takes no value` };
      parsed.flags.add(arg);
    } else if (spec.options.includes(arg)) {
      value ??= args.shift();
      if (value === undefined || value === '') return { kind: 'error', message: `${arg} needs a value` };
      parsed.options.set(arg, [...(parsed.options.get(arg) ?? []), value]);
    } else if (arg.startsWith('-') && arg !== '-') {
      return { kind: 'error', message: `unknown option ${JSON.stringify(arg)} for ${name}` };
    } else {
      parsed.positionals.push(arg);
    }
  }
  if (parsed.positionals.length > spec.positionals) {
    return { kind: 'error', message: `unexpected argument ${JSON.stringify(parsed.positionals[spec.positionals])}` };
  }
  return parsed;
}

/** The last value of an option, or undefined. */
const last = (parsed: Parsed, option: string): string | undefined => parsed.options.get(option)?.at(-1);

/** `stevedore help <command>` and `stevedore <command> --help`. */
export const COMMAND_HELP: Readonly<Record<SubcommandName, string>> = {
  serve: `Usage: stevedore serve [--config] [config.yml]

Runs the registry on the configured storage, upstreams and port.
`,
  gc: `Usage: stevedore gc [--dry-run] [--delete-untagged] [--config] [config.yml]

Marks every blob reachable from a linked manifest revision (layers, config,
index children, schema1 signatures, referrers of kept manifests) and removes
the rest, with dangling links and stale uploads. Safe while a server runs on
the same storage: young blobs and blobs being filled are kept, and a lock
under the storage root keeps two sweeps from running at once.

  -d, --dry-run          Print what would be removed, and the totals; remove nothing.
  -m, --delete-untagged  Also remove manifests no tag points at (and what only they reference).
`,
  prefetch: `Usage: stevedore prefetch [--config FILE] IMAGE… | --file LIST [--platform OS/ARCH …] [--all-platforms]

Pulls images into the cache through the upstreams, as a client pull would
(signatures and referrers included). IMAGE is a reference as clients write it
(docker.io/library/alpine:3.20, ghcr.io/myorg/app@sha256:…). Idempotent. A
progress bar on a terminal, JSON lines otherwise. Exit code 1 if any image
failed (each failure is named).

  -f, --file LIST      Images, one per line (# comments).
  --platform P         Only this platform of an index (repeatable); default: defaultplatform.
  --all-platforms      Every platform of an index.
`,
  export: `Usage: stevedore export [--config FILE] IMAGE… -o bundle.tar [--referrers]

Writes cached images (manifests, blobs, schema1 signatures) as an OCI image
layout inside a tar, with an index of every file's digest. Only what is
cached is exported; nothing is fetched.

  -o, --output FILE    The bundle to write.
  --referrers          Include the referrers (signatures, SBOMs) of each image.
`,
  import: `Usage: stevedore import bundle.tar [--config] [config.yml]

Loads a bundle written by export into the storage: every digest is verified
before anything becomes visible, then tags are linked. A damaged bundle
imports nothing; importing twice changes nothing.
`,
};

export function parseArgs(argv: readonly string[]): Command {
  const args = [...argv];
  if (args.length === 0) return { kind: 'help' };
  const first = args.shift() as string;
  if (first === '-h' || first === '--help') return { kind: 'help' };
  if (first === 'help') {
    const topic = args[0];
    return topic !== undefined && topic in SPECS ? { kind: 'help', topic: topic as SubcommandName } : { kind: 'help' };
  }
  if (first === '-v' || first === '--version' || first === 'version') return { kind: 'version' };
  if (!(first in SPECS)) return { kind: 'error', message: `unknown command ${JSON.stringify(first)}` };
  const name = first as SubcommandName;
  const parsed = parseCommand(name, args);
  if ('kind' in parsed) return parsed;
  const config = last(parsed, '--config');
  const withConfig = <T extends object>(command: T, path: string | undefined): T & { configPath?: string } =>
    path === undefined ? command : { ...command, configPath: path };
  switch (name) {
    case 'serve':
      return withConfig({ kind: 'serve' as const }, config ?? parsed.positionals[0]);
    case 'gc':
      // Distribution's `registry garbage-collect [--dry-run] [--delete-untagged] config.yml`.
      return withConfig(
        { kind: 'gc' as const, dryRun: parsed.flags.has('--dry-run'), deleteUntagged: parsed.flags.has('--delete-untagged') },
        config ?? parsed.positionals[0],
      );
    case 'prefetch': {
      const file = last(parsed, '--file');
      if (parsed.positionals.length === 0 && file === undefined) return { kind: 'error', message: 'prefetch needs images, or --file with a list of them' };
      return withConfig(
        {
          kind: 'prefetch' as const,
          images: parsed.positionals,
          ...(file === undefined ? {} : { file }),
          platforms: parsed.options.get('--platform') ?? [],
          allPlatforms: parsed.flags.has('--all-platforms'),
        },
        config,
      );
    }
    case 'export': {
      const output = last(parsed, '--output');
      if (output === undefined) return { kind: 'error', message: 'export needs -o bundle.tar' };
      if (parsed.positionals.length === 0) return { kind: 'error', message: 'export needs at least one image' };
      return withConfig({ kind: 'export' as const, images: parsed.positionals, output, referrers: parsed.flags.has('--referrers') }, config);
    }
    case 'import': {
      const [bundle, positionalConfig] = parsed.positionals;
      if (bundle === undefined) return { kind: 'error', message: 'import needs a bundle: stevedore import bundle.tar [config.yml]' };
      return withConfig({ kind: 'import' as const, bundle }, config ?? positionalConfig);
    }
  }
}
