/**
 * The operations endpoints beside the registry API: `/metrics`, `/healthz`,
 * `/readyz` (open, for probes and scrapers; no content, no names), and the
 * status page `/ui/` with its JSON API `/api/v1/` (behind the same auth as
 * the registry). Each endpoint lives in its own handler module; this file
 * only says which path goes where.
 */
import type { RequestContext } from './context.js';
import { serveHealth, serveReady, type HealthChecks } from './handlers/health.js';
import { serveMetrics, type MetricsSource } from './handlers/metrics.js';
import { serveApi, serveUi, type StatusSource } from './handlers/ui.js';

export interface Operations {
  /** /metrics on the main port (metrics.enabled). */
  metrics?: MetricsSource;
  /** /healthz and /readyz. */
  health?: HealthChecks;
  /** /ui/ and /api/v1/ (ui.enabled). */
  status?: StatusSource;
}

/** Endpoints answered before authentication: probes and scrapers carry no credentials. */
export function openEndpoint(ctx: RequestContext, ops: Operations): Promise<void> | undefined {
  const { path } = ctx;
  if (path === '/healthz' && ops.health !== undefined) return serveHealth(ctx, ops.health);
  if (path === '/readyz' && ops.health !== undefined) return serveReady(ctx, ops.health);
  if (path === '/metrics' && ops.metrics !== undefined) return serveMetrics(ctx, ops.metrics);
  return undefined;
}

/** Endpoints answered after authentication, as the registry API is. */
export function guardedEndpoint(ctx: RequestContext, ops: Operations): Promise<void> | undefined {
  const { path } = ctx;
  if (ops.status === undefined) return undefined;
  if (path === '/ui' || path.startsWith('/ui/')) return serveUi(ctx, ops.status);
  if (path.startsWith('/api/v1/')) return serveApi(ctx, ops.status);
  return undefined;
}
