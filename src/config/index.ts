/** The configuration layer's public surface; the rest of Stevedore imports from here. */
export { loadConfig, parseConfig, EMBEDDED_DEFAULT_YAML, EMBEDDED_SOURCE, type LoadOptions } from './load.js';
export { CONFIG_ERROR_CODES, ConfigError, isConfigError, type ConfigErrorCode } from './errors.js';
export { CONFIG_PATH_ENV, ENV_PREFIXES, configPathFromEnv } from './env.js';
export { DurationError, formatDuration, parseDuration } from './duration.js';
export { SCHEMA, type Kind, type SchemaEntry, type Status } from './schema.js';
export type {
  ConfigNotice,
  LoadedConfig,
  LogLevel,
  MetadataStore,
  StevedoreConfig,
  UpstreamConfig,
} from './types.js';
