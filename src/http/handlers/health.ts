/** GET /healthz (the process answers) and GET /readyz (storage writable, metadata reachable; upstreams reported). */
import type { RequestContext } from '../context.js';

export interface HealthChecks {
  /** Placeholder shape: the readiness report, built by the health checks. */
  ready(): Promise<{ ready: boolean; checks: Record<string, unknown> }>;
}

function json(ctx: RequestContext, status: number, body: unknown): void {
  const payload = Buffer.from(JSON.stringify(body));
  ctx.res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': payload.byteLength, 'Cache-Control': 'no-store' });
  ctx.res.end(ctx.head ? undefined : payload);
}

export async function serveHealth(ctx: RequestContext, checks: HealthChecks): Promise<void> {
  void checks;
  json(ctx, 200, { status: 'ok' });
}

export async function serveReady(ctx: RequestContext, checks: HealthChecks): Promise<void> {
  const report = await checks.ready();
  json(ctx, report.ready ? 200 : 503, report);
}
