/**
 * The storage driver a configuration names: the filesystem driver under
 * `storage.filesystem.rootdirectory`, or the S3 driver for `storage.s3`. The
 * only place that picks one, for the server and the one-shot commands alike.
 */
import type { StevedoreConfig } from '../config/types.js';
import type { StorageDriver } from './driver.js';
import { FilesystemDriver } from './filesystem.js';

/** The S3 driver (and the AWS SDK, ~20 MiB) is loaded only when configured. */
export async function openStorageDriver(storage: StevedoreConfig['storage']): Promise<StorageDriver> {
  if (storage.driver === 's3' && storage.s3 !== undefined) {
    const { s3 } = storage;
    const { S3Driver } = await import('./s3.js');
    return new S3Driver({
      region: s3.region,
      bucket: s3.bucket,
      ...(s3.regionendpoint === undefined ? {} : { regionendpoint: s3.regionendpoint }),
      rootdirectory: s3.rootdirectory,
      ...(s3.accesskey === undefined ? {} : { accesskey: s3.accesskey }),
      ...(s3.secretkey === undefined ? {} : { secretkey: s3.secretkey }),
      forcepathstyle: s3.forcepathstyle,
      secure: s3.secure,
      skipverify: s3.skipverify,
      chunksize: s3.chunksize,
      multipartcopychunksize: s3.multipartcopychunksize,
      multipartcopymaxconcurrency: s3.multipartcopymaxconcurrency,
      multipartcopythresholdsize: s3.multipartcopythresholdsize,
    });
  }
  return new FilesystemDriver(storage.filesystem.rootdirectory);
}

/** Where the storage is, for log lines: the root directory, or `s3://bucket/rootdirectory`. */
export function describeStorage(storage: StevedoreConfig['storage']): string {
  if (storage.driver === 's3' && storage.s3 !== undefined) return `s3://${storage.s3.bucket}/${storage.s3.rootdirectory.replace(/^\/+/, '')}`;
  return storage.filesystem.rootdirectory;
}
