/**
 * What prefetch shows while it runs: on a terminal, cli-progress bars (the
 * images done, and each image's bytes); otherwise one JSON line per image
 * and a summary line, for scripts and CI logs:
 *
 *   {"image":"alpine:3.20","status":"done","repository":"library/alpine","digest":"sha256:…","manifests":3,"blobs":4,"referrers":1,"bytes":3456789}
 *   {"image":"team/nothere:v1","status":"failed","error":"MANIFEST_UNKNOWN: manifest unknown"}
 *   {"status":"summary","images":2,"done":1,"failed":1,"bytes":3456789,"failedImages":["team/nothere:v1"]}
 */
import cliProgress from 'cli-progress';
import type { ImageProgress, PrefetchedImage } from './prefetch.js';

export interface PrefetchSummary {
  images: number;
  done: number;
  failed: number;
  bytes: number;
  failedImages: string[];
}

export interface ImageReport extends ImageProgress {
  done(result: PrefetchedImage): void;
  failed(message: string): void;
}

export interface PrefetchReporter {
  image(reference: string): ImageReport;
  end(summary: PrefetchSummary): void;
}

export type Output = Pick<NodeJS.WritableStream, 'write'>;

/** A size for people: 1.5 MiB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export class JsonLinesReporter implements PrefetchReporter {
  constructor(private readonly out: Output) {}

  private line(value: object): void {
    this.out.write(`${JSON.stringify(value)}\n`);
  }

  image(reference: string): ImageReport {
    return {
      total: () => undefined,
      advance: () => undefined,
      done: (result) => {
        const { reference: image, missingPlatforms, ...rest } = result;
        this.line({ image, status: 'done', ...rest, ...(missingPlatforms.length > 0 ? { missingPlatforms } : {}) });
      },
      failed: (error) => this.line({ image: reference, status: 'failed', error }),
    };
  }

  end(summary: PrefetchSummary): void {
    this.line({ status: 'summary', ...summary });
  }
}

/** Bars on a terminal: the images done so far, and one bar of bytes per image under way. */
export class BarReporter implements PrefetchReporter {
  private readonly bars: cliProgress.MultiBar;
  private readonly overall: cliProgress.SingleBar;
  private finished = 0;

  constructor(
    private readonly out: NodeJS.WritableStream,
    total: number,
  ) {
    this.bars = new cliProgress.MultiBar(
      { stream: out, hideCursor: true, clearOnComplete: true, format: ' {bar} {percentage}% | {name} | {done}/{size}' },
      cliProgress.Presets.shades_classic,
    );
    this.overall = this.bars.create(total, 0, { name: 'images', done: '0', size: String(total) });
  }

  image(reference: string): ImageReport {
    let total = 0;
    let done = 0;
    const bar = this.bars.create(1, 0, { name: reference, done: formatBytes(0), size: '?' });
    const render = (): void => {
      bar.setTotal(Math.max(total, 1));
      bar.update(done, { done: formatBytes(done), size: formatBytes(total) });
    };
    const over = (line: string): void => {
      // Logged first: removing a bar redraws, which writes the logged line out (stop() would drop it).
      this.bars.log(`${line}\n`);
      this.finished += 1;
      this.overall.update(this.finished, { done: String(this.finished) });
      this.bars.remove(bar);
    };
    return {
      total: (bytes) => {
        total += bytes;
        render();
      },
      advance: (bytes) => {
        done += bytes;
        render();
      },
      done: (result) => {
        const platforms = result.missingPlatforms.length > 0 ? `; no ${result.missingPlatforms.join(', ')}` : '';
        over(`done    ${reference}: ${result.manifests} manifests, ${result.blobs} blobs, ${formatBytes(result.bytes)}${platforms}`);
      },
      failed: (error) => over(`failed  ${reference}: ${error}`),
    };
  }

  end(summary: PrefetchSummary): void {
    this.bars.stop();
    this.out.write(`${summary.done} of ${summary.images} images prefetched, ${formatBytes(summary.bytes)}${summary.failed > 0 ? `; ${summary.failed} failed` : ''}\n`);
  }
}
