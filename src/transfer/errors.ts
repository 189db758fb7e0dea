/**
 * Errors of prefetch, export and import, each with a stable code. What a
 * command prints is the message; the code is for tests and for callers
 * that branch on the kind of failure.
 */
export type TransferErrorCode =
  /** An image reference that is not one (`Alpine`, `a:b:c`). */
  | 'ERR_IMAGE_REFERENCE'
  /** An image to export that the cache does not hold whole. */
  | 'ERR_NOT_CACHED'
  /** stevedore-bundle.json missing, first in the tar or not, or not a valid bundle index. */
  | 'ERR_BUNDLE_INDEX'
  /** An entry whose name is not a file of the layout, or escapes it. */
  | 'ERR_BUNDLE_PATH'
  /** An entry that is not a regular file (symbolic or hard link, device, directory). */
  | 'ERR_BUNDLE_ENTRY'
  /** Content that does not hash to its digest, or has another size than the index says. */
  | 'ERR_BUNDLE_DIGEST'
  /** The tar ends in the middle of an entry, or a header is damaged. */
  | 'ERR_BUNDLE_TRUNCATED'
  /** A file the index lists that the tar does not hold, or a manifest's blob the bundle lacks. */
  | 'ERR_BUNDLE_MISSING';

export class TransferError extends Error {
  constructor(
    readonly code: TransferErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TransferError';
  }
}

export const isTransferError = (err: unknown): err is TransferError => err instanceof TransferError;
