// The command line, parsed: every subcommand's flags, options and
// positionals, Distribution's spellings, and the usage errors.
import t from 'tap'
import { COMMAND_HELP, parseArgs, USAGE } from '../../src/cli/args.js'

t.test('commands and their arguments', async t => {
  const cases: [string[], unknown][] = [
    [[], { kind: 'help' }],
    [['--help'], { kind: 'help' }],
    [['help', 'gc'], { kind: 'help', topic: 'gc' }],
    [['help', 'nope'], { kind: 'help' }],
    [['gc', '--help'], { kind: 'help', topic: 'gc' }],
    [['-v'], { kind: 'version' }],
    [['serve'], { kind: 'serve' }],
    [['serve', 'c.yml'], { kind: 'serve', configPath: 'c.yml' }],
    [['serve', '--config=c.yml'], { kind: 'serve', configPath: 'c.yml' }],
    [['serve', '-c', 'a.yml', 'b.yml'], { kind: 'serve', configPath: 'a.yml' }],
    [['gc', 'c.yml'], { kind: 'gc', configPath: 'c.yml', dryRun: false, deleteUntagged: false }],
    [['gc', '-d', '-m', 'c.yml'], { kind: 'gc', configPath: 'c.yml', dryRun: true, deleteUntagged: true }],
    [['gc', '--dry-run', '--delete-untagged'], { kind: 'gc', dryRun: true, deleteUntagged: true }],
    [['prefetch', 'alpine:3', 'ghcr.io/x/y:1'], { kind: 'prefetch', images: ['alpine:3', 'ghcr.io/x/y:1'], platforms: [], allPlatforms: false }],
    [
      ['prefetch', '-f', 'list.txt', '--platform', 'linux/amd64', '--platform=linux/arm64', '--config', 'c.yml'],
      { kind: 'prefetch', images: [], file: 'list.txt', platforms: ['linux/amd64', 'linux/arm64'], allPlatforms: false, configPath: 'c.yml' },
    ],
    [['prefetch', '--all-platforms', 'x'], { kind: 'prefetch', images: ['x'], platforms: [], allPlatforms: true }],
    [['export', 'a:1', 'b:2', '-o', 'out.tar', '--referrers'], { kind: 'export', images: ['a:1', 'b:2'], output: 'out.tar', referrers: true }],
    [['import', 'bundle.tar'], { kind: 'import', bundle: 'bundle.tar' }],
    [['import', 'bundle.tar', 'c.yml'], { kind: 'import', bundle: 'bundle.tar', configPath: 'c.yml' }],
    [['import', '--', '-odd.tar'], { kind: 'import', bundle: '-odd.tar' }],
  ]
  for (const [argv, expected] of cases) t.same(parseArgs(argv), expected, argv.join(' ') || '(nothing)')
})

t.test('usage errors', async t => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command "frobnicate"/],
    [['serve', '--bogus'], /unknown option "--bogus" for serve/],
    [['serve', 'a.yml', 'b.yml'], /unexpected argument "b.yml"/],
    [['serve', '--config'], /--config needs a value/],
    [['gc', '--dry-run=yes'], /--dry-run takes no value/],
    [['prefetch'], /prefetch needs images, or --file/],
    [['export', 'a:1'], /export needs -o bundle.tar/],
    [['export', '-o', 'x.tar'], /export needs at least one image/],
    [['import'], /import needs a bundle/],
    [['import', 'a', 'b', 'c'], /unexpected argument "c"/],
  ]
  for (const [argv, message] of cases) {
    const command = parseArgs(argv)
    t.equal(command.kind, 'error', argv.join(' '))
    t.match((command as { message?: string }).message, message, argv.join(' '))
  }
})

t.test('every command has its help, and the usage names it', async t => {
  for (const [name, text] of Object.entries(COMMAND_HELP)) {
    t.match(text, new RegExp(`^Usage: stevedore ${name}`), `${name} help`)
    t.match(USAGE, new RegExp(`\\n  ${name}\\b`), `the usage lists ${name}`)
  }
})
