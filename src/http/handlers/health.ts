/**
 * GET /healthz: the process answers (nothing is checked, so a liveness probe
 * never restarts an instance that is only waiting on its storage).
 * GET /readyz: 200 when storage is writable and the metadata store answers,
 * 503 naming what failed; upstreams are reported in the body either way.
 */
import type { ReadinessSource } from '../../lifecycle/readiness.js';
import type { RequestContext } from '../context.js';

export type HealthChecks = ReadinessSource;

function json(ctx: RequestContext, status: number, body: unknown): void {
  const payload = Buffer.from(JSON.stringify(body));
  ctx.res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': payload.byteLength, 'Cache-Control': 'no-store' });
  ctx.res.end(ctx.head ? undefined : payload);
}

export async function serveHealth(ctx: RequestContext, _checks: HealthChecks): Promise<void> {
  json(ctx, 200, { status: 'ok' });
}

export async function serveReady(ctx: RequestContext, checks: HealthChecks): Promise<void> {
  const report = await checks.ready();
  json(ctx, report.ready ? 200 : 503, { status: report.ready ? 'ready' : 'unready', ...report });
}
