/** GET /metrics: the Prometheus text format. */
import type { RequestContext } from '../context.js';

export interface MetricsSource {
  contentType: string;
  render(): Promise<string>;
}

export async function serveMetrics(ctx: RequestContext, source: MetricsSource): Promise<void> {
  const body = Buffer.from(await source.render());
  ctx.res.writeHead(200, { 'Content-Type': source.contentType, 'Content-Length': body.byteLength, 'Cache-Control': 'no-store' });
  ctx.res.end(ctx.head ? undefined : body);
}
