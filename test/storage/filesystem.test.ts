// The filesystem driver passes the driver contract.
import t from 'tap'
import { FilesystemDriver } from '../../src/storage/filesystem.js'
import { driverContract } from '../helpers/driver-contract.js'

driverContract(t, async t => new FilesystemDriver(t.testdir()))
