// Prefetch, export, import and offline mode against a real Distribution:
// an OCI image, a two-platform index, a schema1 image and an image with a
// referrer are prefetched from a list (a subprocess: JSON lines, exit code),
// exported to a bundle skopeo reads as an oci-archive, imported into a fresh
// storage that an offline Stevedore then serves with the upstream stopped —
// every pull byte-identical, signatures and referrers included. Damaged
// bundles (a flipped byte, cut short, a file escaping the layout, a
// symlink, a file missing) are refused and leave the storage as it was.
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pino } from 'pino'
import { stringify } from 'yaml'
import t from 'tap'
import { Header } from 'tar'
import { exportCommand, importCommand, prefetchCommand, type CommandIo } from '../../src/cli/transfer.js'
import { parseConfig } from '../../src/config/load.js'
import type { StevedoreConfig } from '../../src/config/types.js'
import { parseSignedManifest, verifySignatures } from '../../src/registry/schema1.js'
import { compareLayoutBlobs } from '../helpers/blobs.js'
import { CommandError, runCommand } from '../helpers/command.js'
import { startDistribution } from '../helpers/distribution.js'
import { listFiles } from '../helpers/files.js'
import { writeOciImage, writeOciIndex } from '../helpers/images.js'
import { startInProcess } from '../helpers/inprocess.js'
import { pushBlob, pushManifest, sha256 } from '../helpers/push.js'
import { pullToLayout, pushLayout, skopeo } from '../helpers/skopeo.js'
import { REPO_ROOT, stevedoreCommand } from '../helpers/stevedore.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const PRETTYJWS = 'application/vnd.docker.distribution.manifest.v1+prettyjws'
const SIG = 'application/vnd.dev.cosign.artifact.sig.v1+json'
const V2 = 'docker/registry/v2/repositories'

/** Every file and directory under `root` with its content's hash; the driver's scratch space (.stevedore) aside. */
async function treeHash(root: string): Promise<string> {
  const hash = createHash('sha256')
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(root, rel), { withFileTypes: true })
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`
      if (path === '.stevedore') continue
      if (entry.isDirectory()) {
        hash.update(`d ${path}\n`)
        await walk(path)
      } else {
        hash.update(`f ${path} ${sha256(await readFile(join(root, path)))}\n`)
      }
    }
  }
  await walk('')
  return hash.digest('hex')
}

/** The entries of a tar: name, type flag, where the header and the data start, and the size. */
function tarIndex(tar: Buffer): { name: string; header: number; data: number; size: number }[] {
  const out = []
  for (let off = 0; off + 512 <= tar.length; ) {
    const block = tar.subarray(off, off + 512)
    if (block.every(b => b === 0)) break
    const name = block.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '')
    const size = parseInt(block.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0', 8)
    out.push({ name, header: off, data: off + 512, size })
    off += 512 + Math.ceil(size / 512) * 512
  }
  return out
}

/** A tar entry (header, content, padding) built with node-tar's header encoder. */
function tarEntry(data: { path: string; type: 'File' | 'SymbolicLink'; linkpath?: string }, content = Buffer.alloc(0)): Buffer {
  const header = new Header({ ...data, mode: 0o644, uid: 0, gid: 0, size: content.length, mtime: new Date(0) })
  header.encode()
  return Buffer.concat([header.block as Buffer, content, Buffer.alloc((512 - (content.length % 512)) % 512)])
}

/** stdout and stderr of an in-process command, kept. */
function capture(tty = false): { io: CommandIo; stdout: () => string; stderr: () => string } {
  const out: string[] = []
  const err: string[] = []
  const sink = (into: string[]) => ({ write: (chunk: unknown) => (into.push(String(chunk)), true), isTTY: tty }) as unknown as NodeJS.WritableStream
  return { io: { stdout: sink(out), stderr: sink(err) }, stdout: () => out.join(''), stderr: () => err.join('') }
}

const jsonLines = (text: string): Record<string, any>[] => text.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l))

/** Runs bin/stevedore to its end: exit code and both streams. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const command = stevedoreCommand(args, { ...process.env })
  try {
    const { stdout, stderr } = await runCommand(command.command, command.args, { env: command.env, cwd: REPO_ROOT, timeoutMs: 60_000 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    if (!(err instanceof CommandError)) throw err
    return { code: err.exitCode ?? -1, stdout: err.stdout, stderr: err.stderr }
  }
}

const silent = pino({ level: 'silent' })

t.test('prefetch a list, export it, import it elsewhere, serve it offline', async t => {
  const dir = t.testdir()
  const upstream = await startDistribution(t, { config: { compatibility: { schema1: { enabled: true } } } })

  // Four kinds of image on the upstream.
  const single = await writeOciImage(join(dir, 'single'), { tag: '1.0', seed: 'transfer-single', layerSizes: [3000, 70_000] })
  await pushLayout(join(dir, 'single'), '1.0', `${upstream.host}/team/single:1.0`)
  const multi = await writeOciIndex(join(dir, 'multi'), {
    tag: '2.0',
    seed: 'transfer-multi',
    platforms: [
      { os: 'linux', architecture: 'amd64', layerSizes: [2000] },
      { os: 'linux', architecture: 'arm64', layerSizes: [2500] },
    ],
  })
  await pushLayout(join(dir, 'multi'), '2.0', `${upstream.host}/team/multi:2.0`, { all: true })
  await writeOciImage(join(dir, 'legacy'), { tag: '3.0', seed: 'transfer-legacy', layerSizes: [1500, 1800] })
  await pushLayout(join(dir, 'legacy'), '3.0', `${upstream.host}/team/legacy:3.0`, { format: 'v2s1' })
  const signed = await writeOciImage(join(dir, 'signed'), { tag: '4.0', seed: 'transfer-signed', layerSizes: [1200] })
  await pushLayout(join(dir, 'signed'), '4.0', `${upstream.host}/team/signed:4.0`)
  // A signature artifact with `subject`; Distribution 2.8 has no referrers API: the tag schema's index lists it, cosign's tag names it.
  const empty = await pushBlob(upstream.url, 'team/signed', Buffer.from('{}'))
  const sigLayer = await pushBlob(upstream.url, 'team/signed', Buffer.from('signature-bytes'))
  const artifact = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: SIG,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: empty.size },
    layers: [{ mediaType: SIG, digest: sigLayer.digest, size: sigLayer.size }],
    subject: { mediaType: OCI_MANIFEST, digest: signed.manifestDigest, size: signed.manifests[0]?.size },
  }
  const sig = await pushManifest(upstream.url, 'team/signed', sha256(JSON.stringify(artifact)), artifact, OCI_MANIFEST)
  const hexTag = signed.manifestDigest.replace(':', '-')
  await pushManifest(upstream.url, 'team/signed', `${hexTag}.sig`, artifact, OCI_MANIFEST)
  await pushManifest(upstream.url, 'team/signed', hexTag, { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: sig.digest, size: sig.size, artifactType: SIG }] }, OCI_INDEX)

  const upstreams = {
    proxy: { remoteurl: upstream.url, hosts: ['mirror.example'] },
    upstreams: { second: { remoteurl: `http://localhost:${upstream.port}`, hosts: ['second.example'] } },
  }
  const configFile = async (name: string, over: Record<string, unknown> = {}): Promise<{ path: string; root: string; config: StevedoreConfig }> => {
    const root = join(dir, `${name}-storage`)
    await mkdir(root)
    const value = { version: '0.1', log: { level: 'warn' }, storage: { filesystem: { rootdirectory: root } }, ...upstreams, ...over }
    const path = join(dir, `${name}.yml`)
    await writeFile(path, stringify(value))
    return { path, root, config: parseConfig(stringify(value), {}, path).config }
  }
  // Tag freshness kept on disk: a second prefetch knows the tags were just checked.
  const a = await configFile('a', { metadata: { store: 'file', path: join(dir, 'a-metadata.json') } })
  const images = [
    `${upstream.host}/team/single:1.0`,
    'mirror.example/team/multi:2.0',
    'team/legacy:3.0',
    'team/signed:4.0',
    'second.example/team/single:1.0',
    `team/single@${single.manifestDigest}`,
  ]
  const list = join(dir, 'list.txt')
  await writeFile(list, `# what the site needs\n${images.join('\n')}\n\n`)

  await t.test('prefetch --file: one JSON line per image, a summary, exit 0; again: nothing changes', async t => {
    const run = await cli(['prefetch', '--config', a.path, '--file', list, '--all-platforms'])
    t.equal(run.code, 0, `exit 0 (stderr: ${run.stderr.slice(0, 2000)})`)
    const lines = jsonLines(run.stdout)
    const done = lines.filter(l => l.status === 'done')
    t.same(done.map(l => l.image), images, 'every image done, in order')
    const by = (image: string) => done.find(l => l.image === image) ?? {}
    t.match(by(images[0] as string), { repository: 'team/single', digest: single.manifestDigest, manifests: 1, blobs: 3 })
    t.match(by('mirror.example/team/multi:2.0'), { repository: 'team/multi', digest: multi.manifestDigest, manifests: 3, blobs: 4 })
    t.match(by('team/legacy:3.0'), { repository: 'team/legacy', manifests: 1, blobs: 2 })
    t.match(by('team/signed:4.0'), { repository: 'team/signed', manifests: 2, referrers: 1, blobs: 4 })
    t.match(by('second.example/team/single:1.0'), { repository: 'second.example/team/single', digest: single.manifestDigest })
    t.match(lines.at(-1), { status: 'summary', images: 6, done: 6, failed: 0 })

    const before = await treeHash(a.root)
    const again = await cli(['prefetch', '--config', a.path, '--file', list, '--all-platforms'])
    t.equal(again.code, 0, 'a second prefetch succeeds')
    t.equal(await treeHash(a.root), before, 'and changes nothing in storage')
  })

  await t.test('a missing image fails (exit 1, named), the others are fetched; --platform limits an index', async t => {
    const b = await configFile('b')
    const out = capture()
    const code = await prefetchCommand(
      { kind: 'prefetch', images: ['team/nothere:1', 'team/multi:2.0'], platforms: ['linux/arm64'], allPlatforms: false },
      b.config,
      silent,
      out.io,
    )
    t.equal(code, 1, 'exit 1')
    const lines = jsonLines(out.stdout())
    t.match(lines[0], { image: 'team/nothere:1', status: 'failed', error: /MANIFEST_UNKNOWN|NAME_UNKNOWN/ })
    t.match(lines[1], { image: 'team/multi:2.0', status: 'done', manifests: 2 })
    t.match(lines[2], { status: 'summary', failed: 1, failedImages: ['team/nothere:1'] })
    t.match(out.stderr(), /prefetch failed for 1 of 2 images:\n {2}team\/nothere:1: /, 'the failure named on stderr')
    const revisions = await readdir(join(b.root, V2, 'team/multi/_manifests/revisions/sha256'))
    const arm64 = multi.manifests.find(m => m.platform.architecture === 'arm64')?.digest.slice(7)
    t.same(revisions.sort(), [multi.manifestDigest.slice(7), arm64].sort(), 'the index and its arm64 child only')
  })

  const bundle = join(dir, 'bundle.tar')
  await t.test('export: an OCI layout in a tar that skopeo reads', async t => {
    const out = capture()
    const code = await exportCommand({ kind: 'export', images, output: bundle, referrers: true }, a.config, silent, out.io)
    t.equal(code, 0, `exit 0 (${out.stderr()})`)
    const lines = jsonLines(out.stdout())
    t.same(lines.filter(l => l.status === 'exported').map(l => l.refName), [
      'team/single:1.0',
      '2.0',
      '3.0',
      '4.0',
      'second.example/team/single:1.0',
      `team/single@${single.manifestDigest}`,
    ], 'ref names: the tag, or repository:tag where two images share it')
    t.match(lines.find(l => l.image === 'team/signed:4.0'), { referrers: 2 }, 'the signature and the tag-schema index')
    t.match(lines.find(l => l.image === 'team/legacy:3.0'), { signatures: 1 })
    const names = tarIndex(await readFile(bundle)).map(e => e.name)
    t.same(names.slice(0, 3), ['stevedore-bundle.json', 'oci-layout', 'index.json'], 'the bundle index first')
    t.ok(names.slice(3).every(n => /^blobs\/sha256\/[a-f0-9]{64}$/.test(n)), 'then blobs only')

    const fromBundle = join(dir, 'from-bundle')
    await skopeo(['--insecure-policy', 'copy', '--all', `oci-archive:${bundle}:2.0`, `oci:${fromBundle}-multi:2.0`])
    t.same(await compareLayoutBlobs(join(dir, 'multi'), `${fromBundle}-multi`), [], 'skopeo reads the index, both platforms, byte-identical')
    await skopeo(['--insecure-policy', 'copy', `oci-archive:${bundle}:team/single:1.0`, `oci:${fromBundle}-single:1.0`])
    t.same(await compareLayoutBlobs(join(dir, 'single'), `${fromBundle}-single`), [], 'and an image by repository:tag')

    const terminal = capture(true)
    t.equal(await exportCommand({ kind: 'export', images, output: `${bundle}.again`, referrers: true }, a.config, silent, terminal.io), 0)
    t.match(terminal.stdout(), /exported team\/legacy:3\.0 as oci-archive:.*bundle\.tar\.again:3\.0 \(1 manifests, 2 blobs, 1 signatures\)/, 'people get sentences')
    t.same(await readFile(`${bundle}.again`), await readFile(bundle), 'the same images give the same bytes')
    const notCached = capture()
    t.equal(await exportCommand({ kind: 'export', images: ['team/single:1.0', 'team/nothere:1'], output: join(dir, 'never.tar'), referrers: false }, a.config, silent, notCached.io), 1)
    t.match(notCached.stderr(), /export failed: nothing was exported:\n {2}team\/nothere:1: not cached: team\/nothere has no tag 1/)
    t.same((await readdir(dir)).filter(f => f.includes('never')), [], 'and no file, not even a partial one')
  })

  const legacyFromUpstream = join(dir, 'legacy-upstream')
  await pullToLayout(`${upstream.host}/team/legacy:3.0`, legacyFromUpstream, '3.0')
  const d = await configFile('d', { proxy: { ...upstreams.proxy, offline: true } })

  await t.test('import into a fresh storage; importing again changes nothing', async t => {
    const run = await cli(['import', bundle, d.path])
    t.equal(run.code, 0, `exit 0 (${run.stderr.slice(0, 2000)})`)
    t.match(jsonLines(run.stdout).at(-1), { status: 'summary', images: 6, blobsPresent: 0, linksAdded: Number })
    const before = await treeHash(d.root)
    const out = capture(true)
    t.equal(await importCommand({ kind: 'import', bundle }, d.config, silent, out.io), 0)
    t.match(out.stdout(), /imported team\/legacy:3\.0@sha256:[a-f0-9]{64}\n/)
    t.match(out.stdout(), /\n0 blobs added \(0 B\), \d+ already stored, 0 links written\n$/, 'every blob found, every link there')
    t.equal(await treeHash(d.root), before, 'the storage tree is unchanged')
  })

  await upstream.stop()
  const offline = await startInProcess(t, d.root, { ...upstreams, proxy: { ...upstreams.proxy, offline: true } })

  await t.test('offline, the upstream stopped: every image pulls byte-identical', async t => {
    const pulls: [string, string, boolean][] = [
      ['team/single:1.0', join(dir, 'single'), false],
      ['team/multi:2.0', join(dir, 'multi'), true],
      ['team/signed:4.0', join(dir, 'signed'), false],
      ['second.example/team/single:1.0', join(dir, 'single'), false],
      ['team/legacy:3.0', legacyFromUpstream, false],
    ]
    for (const [image, original, all] of pulls) {
      const layout = join(dir, `offline-${image.replace(/[/:.]/g, '-')}`)
      await pullToLayout(`${offline.host}/${image}`, layout, 'pulled', { all })
      t.same(await compareLayoutBlobs(original, layout), [], `${image}: byte-identical`)
    }
  })

  await t.test('offline: schema1 signatures and referrers as the upstream gave them; misses are 404s', async t => {
    const legacy = await fetch(`${offline.url}/v2/team/legacy/manifests/3.0`, { headers: { Accept: PRETTYJWS } })
    t.equal(legacy.status, 200)
    const document = parseSignedManifest(Buffer.from(await legacy.arrayBuffer()))
    await t.resolves(verifySignatures(document), 'the signatures verify')
    const stored = await readdir(join(a.root, V2, 'team/legacy/_manifests/revisions/sha256', document.digest.hex, 'signatures/sha256'))
    t.same(document.signatures.map(s => sha256(s.raw).slice(7)).sort(), stored.sort(), "the upstream's signatures, none made here")

    const referrers = await fetch(`${offline.url}/v2/team/signed/referrers/${signed.manifestDigest}`)
    t.equal(referrers.status, 200)
    t.same(((await referrers.json()) as { manifests: { digest: string }[] }).manifests.map(m => m.digest), [sig.digest], 'the referrer is listed')
    const manifest = await fetch(`${offline.url}/v2/team/signed/manifests/${sig.digest}`, { headers: { Accept: OCI_MANIFEST } })
    t.same(Buffer.from(await manifest.arrayBuffer()), sig.payload, 'served byte-identical')
    const blob = await fetch(`${offline.url}/v2/team/signed/blobs/${sigLayer.digest}`)
    t.equal(Buffer.from(await blob.arrayBuffer()).toString(), 'signature-bytes')
    const cosign = await fetch(`${offline.url}/v2/team/signed/manifests/${hexTag}.sig`, { headers: { Accept: OCI_MANIFEST } })
    t.equal(cosign.headers.get('docker-content-digest'), sig.digest, "cosign's tag was imported too")

    const misses: [string, number, string][] = [
      ['team/nothere/manifests/1', 404, 'MANIFEST_UNKNOWN'],
      ['team/single/manifests/9.9', 404, 'MANIFEST_UNKNOWN'],
      [`team/single/blobs/sha256:${'0'.repeat(64)}`, 404, 'BLOB_UNKNOWN'],
    ]
    for (const [path, status, code] of misses) {
      const res = await fetch(`${offline.url}/v2/${path}`, { headers: { Accept: OCI_MANIFEST } })
      t.equal(res.status, status, `${path}: ${status}, not a 503 from trying the stopped upstream`)
      t.match(await res.json(), { errors: [{ code }] })
    }
  })

  await t.test('damaged bundles are refused; the storage is unchanged', async t => {
    const tar = await readFile(bundle)
    const entries = tarIndex(tar)
    const last = entries.at(-1) as (typeof entries)[number]
    const body = tar.subarray(0, tar.length - 1024)
    const eof = Buffer.alloc(1024)
    const flipped = Buffer.from(tar)
    const at = last.data + Math.floor(last.size / 2)
    flipped[at] = (flipped[at] as number) ^ 0x01
    const variants: [string, Buffer, string, RegExp][] = [
      ['a flipped byte', flipped, 'flipped.tar', /does not match its digest.*damaged or was altered/],
      ['cut short', tar.subarray(0, Math.floor(tar.length * 0.6)), 'short.tar', /truncated/],
      ['an entry escaping the layout', Buffer.concat([body, tarEntry({ path: '../escape', type: 'File' }, Buffer.from('evil!')), eof]), 'escape.tar', /"\.\.\/escape" escapes the bundle's layout/],
      ['a symbolic link', Buffer.concat([body, tarEntry({ path: last.name, type: 'SymbolicLink', linkpath: '/etc/passwd' }), eof]), 'symlink.tar', /is a symbolic link/],
      ['a listed file missing', Buffer.concat([tar.subarray(0, last.header), eof]), 'missing.tar', /lacks 1 of the files its index lists/],
    ]
    const fresh = await configFile('e', { proxy: { ...upstreams.proxy, offline: true } })
    for (const target of [fresh, d]) {
      const before = await treeHash(target.root)
      for (const [label, bytes, name, message] of variants) {
        const path = join(dir, name)
        await writeFile(path, bytes)
        const out = capture()
        t.equal(await importCommand({ kind: 'import', bundle: path }, target.config, silent, out.io), 1, `${label}: exit 1`)
        t.match(out.stderr(), message, `${label}: says why`)
        t.match(out.stderr(), /Nothing was imported/)
        t.equal(await treeHash(target.root), before, `${label}: the ${target === fresh ? 'empty' : 'populated'} storage is unchanged`)
      }
    }
    t.same((await listFiles(dir)).filter(f => /(^|\/)escape$/.test(f)), [], 'nothing written outside the storage')
    const run = await cli(['import', join(dir, 'flipped.tar'), '--config', fresh.path])
    t.equal(run.code, 1, 'the command exits 1')
    t.match(run.stderr, /import of .*flipped\.tar refused: .*does not match its digest/)
  })
})
