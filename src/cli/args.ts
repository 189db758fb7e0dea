/** Command-line parsing: `stevedore serve [--config] [config.yml]`, `--help`, `--version`. */

export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'serve'; configPath?: string }
  | { kind: 'error'; message: string };

export const USAGE = `Usage: stevedore <command> [options]

A pull-through caching proxy for container registries, byte-compatible
with CNCF Distribution (registry:2) storage and configuration.

Commands:
  serve [--config] [config.yml]   Run the registry. Reads a Distribution
                                  config.yml (version 0.1) with Stevedore's
                                  extensions; without one, the embedded
                                  default: filesystem storage under ./data,
                                  in-memory metadata, Docker Hub upstream,
                                  port 5000. Several upstreams (upstreams:
                                  in config.yml) are reached by containerd's
                                  ?ns=<host> or a /v2/<host>/… path prefix.
                                  Open to everyone unless auth: is set
                                  (htpasswd, tokens; access: rules).
  help                            Show this help.
  version                         Print the version.

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

Configuration reference: docs/configuration.md
`;

export function parseArgs(argv: readonly string[]): Command {
  const args = [...argv];
  if (args.length === 0) return { kind: 'help' };
  const first = args.shift() as string;
  if (first === '-h' || first === '--help' || first === 'help') return { kind: 'help' };
  if (first === '-v' || first === '--version' || first === 'version') return { kind: 'version' };
  if (first !== 'serve') return { kind: 'error', message: `unknown command ${JSON.stringify(first)}` };
  let configPath: string | undefined;
  while (args.length > 0) {
    const arg = args.shift() as string;
    if (arg === '-h' || arg === '--help') return { kind: 'help' };
    if (arg === '-c' || arg === '--config') {
      const value = args.shift();
      if (value === undefined) return { kind: 'error', message: `${arg} needs a file` };
      configPath = value;
    } else if (arg.startsWith('--config=')) {
      configPath = arg.slice('--config='.length);
    } else if (arg.startsWith('-')) {
      return { kind: 'error', message: `unknown option ${JSON.stringify(arg)}` };
    } else if (configPath === undefined) {
      configPath = arg;
    } else {
      return { kind: 'error', message: `unexpected argument ${JSON.stringify(arg)}` };
    }
  }
  return configPath === undefined ? { kind: 'serve' } : { kind: 'serve', configPath };
}
