// Sensor configuration: file, environment and flags, with errors that name the key.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CONFIG_DEFAULTS, ConfigError, envName, flagName, parseConfigFile, resolveConfig } from '../../src/config.js';
import { cliPath } from '../helpers/sensor-process.js';

const dir = mkdtempSync(join(tmpdir(), 'dw-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

test('config: names map between camelCase keys, flags and environment variables', () => {
  assert.equal(flagName('metricsAddress'), 'metrics-address');
  assert.equal(envName('metricsAddress'), 'DRIFTWATCH_METRICS_ADDRESS');
  assert.equal(envName('includeHost'), 'DRIFTWATCH_INCLUDE_HOST');
});

test('config: defaults apply when nothing is given', () => {
  assert.deepEqual(resolveConfig({}, {}), CONFIG_DEFAULTS);
});

test('config: precedence is flags > environment > file > defaults, key by key', () => {
  const cfg = file('precedence.yaml', 'logLevel: warn\nmetricsAddress: 0.0.0.0:9000\ndataDir: /srv/dw\nincludeHost: true\n');
  const env = { DRIFTWATCH_METRICS_ADDRESS: '127.0.0.1:9100', DRIFTWATCH_DATA_DIR: '/env/dw' };
  const c = resolveConfig({ config: cfg, dataDir: '/flag/dw' }, env);
  assert.equal(c.dataDir, '/flag/dw', 'flag beats environment and file');
  assert.equal(c.metricsAddress, '127.0.0.1:9100', 'environment beats file');
  assert.equal(c.logLevel, 'warn', 'file beats default');
  assert.equal(c.includeHost, true);
  assert.equal(c.output, 'jsonl', 'default where nobody set it');
  // DRIFTWATCH_CONFIG names the file when no flag does.
  assert.equal(resolveConfig({}, { DRIFTWATCH_CONFIG: cfg }).logLevel, 'warn');
  assert.equal(resolveConfig({}, { DRIFTWATCH_INCLUDE_HOST: 'false', DRIFTWATCH_CONFIG: cfg }).includeHost, false);
});

test('config: integrations are settings like any other', () => {
  const c = resolveConfig({ otlpEndpoint: 'http://collector:4317' }, { DRIFTWATCH_FALCO_HTTP_URL: 'http://falcosidekick:2801/' });
  assert.equal(c.falcoHttpUrl, 'http://falcosidekick:2801/');
  assert.equal(c.otlpEndpoint, 'http://collector:4317');
});

test('config: JSON files are read too', () => {
  const cfg = file('c.json', JSON.stringify({ output: 'falco-json', emitAll: true }));
  const c = resolveConfig({ config: cfg }, {});
  assert.equal(c.output, 'falco-json');
  assert.equal(c.emitAll, true);
});

test('config: signatures is a list of paths: repeated flags, a YAML list or one string, PATH-style in the environment', () => {
  assert.deepEqual(resolveConfig({ signatures: ['a.ts', 'dir'] }, {}).signatures, ['a.ts', 'dir']);
  assert.deepEqual(resolveConfig({ config: file('list.yaml', 'signatures: [one.ts, /srv/sigs]\n') }, {}).signatures, ['one.ts', '/srv/sigs']);
  assert.deepEqual(resolveConfig({ config: file('one.yaml', 'signatures: /srv/sigs\n') }, {}).signatures, ['/srv/sigs']);
  assert.deepEqual(resolveConfig({}, { DRIFTWATCH_SIGNATURES: '/srv/sigs:/etc/x.ts' }).signatures, ['/srv/sigs', '/etc/x.ts']);
  // Flags replace the environment's list, they do not add to it (precedence as for every key).
  assert.deepEqual(resolveConfig({ signatures: ['f.ts'] }, { DRIFTWATCH_SIGNATURES: '/srv/sigs' }).signatures, ['f.ts']);
});

const bad: Array<[string, () => unknown, RegExp]> = [
  ['unknown key in the file', () => parseConfigFile('metricAddress: x:1\n', 'f.yaml'), /f\.yaml: metricAddress: unknown key/],
  ['boolean that is not one', () => parseConfigFile('includeHost: maybe\n', 'f.yaml'), /f\.yaml: includeHost: expected true or false/],
  ['empty string', () => parseConfigFile('dataDir: ""\n', 'f.yaml'), /f\.yaml: dataDir: expected a non-empty string/],
  ['list with a non-string', () => parseConfigFile('signatures: [a.ts, 3]\n', 'f.yaml'), /f\.yaml: signatures: expected a non-empty string or a list of them/],
  ['empty list item in the environment', () => resolveConfig({}, { DRIFTWATCH_SIGNATURES: 'a.ts::b.ts' }), /DRIFTWATCH_SIGNATURES → signatures: expected a non-empty string or a list/],
  ['not a mapping', () => parseConfigFile('- a\n- b\n', 'f.yaml'), /f\.yaml: expected a mapping/],
  ['not YAML', () => parseConfigFile('a: [b\n', 'f.yaml'), /f\.yaml: not valid YAML/],
  ['bad environment value', () => resolveConfig({}, { DRIFTWATCH_EMIT_ALL: 'yes' }), /DRIFTWATCH_EMIT_ALL → emitAll: expected true or false/],
  ['bad output', () => resolveConfig({ output: 'xml' as never }, {}), /^output: must be jsonl or falco-json/],
  ['bad log level', () => resolveConfig({}, { DRIFTWATCH_LOG_LEVEL: 'loud' }), /^logLevel: must be one of/],
  ['bad metrics address', () => resolveConfig({ metricsAddress: '9464' }, {}), /^metricsAddress: expected host:port/],
  ['bad backend', () => resolveConfig({ backend: 'http://x' }, {}), /^backend: expected host:port/],
  ['cert without key', () => resolveConfig({ tlsCert: 'c.pem' }, {}), /tlsCert and tlsKey/],
  ['falco http URL that is not http', () => resolveConfig({}, { DRIFTWATCH_FALCO_HTTP_URL: 'sidekick:2801' }), /^falcoHttpUrl: expected an http:\/\/ or https:\/\/ URL/],
  ['OTLP endpoint with a path', () => resolveConfig({ otlpEndpoint: 'http://collector:4317/v1/logs' }, {}), /^otlpEndpoint: expected host:port/],
  ['missing file', () => resolveConfig({ config: join(dir, 'absent.yaml') }, {}), /absent\.yaml: ENOENT/],
  ['custom signature budget that is not a number', () => resolveConfig({}, { DRIFTWATCH_SIGNATURE_BUDGET_MS: '1s' }), /^signatureBudgetMs: expected a whole number from 10 to 60000 \(got 1s\)/],
  ['custom signature memory below the floor', () => resolveConfig({ signatureMemoryMb: '8' }, {}), /^signatureMemoryMb: expected a whole number from 16 to 4096/],
];
for (const [what, fn, message] of bad) {
  test(`config: ${what} is rejected naming the key`, () => {
    assert.throws(fn, (err: unknown) => err instanceof ConfigError && message.test((err as Error).message));
  });
}

test('config check: a good file prints the resolved settings (token masked) and exits 0', () => {
  const policy = file('policy.yaml', 'signatures:\n  drift.volume_exec: { enabled: false }\n');
  const cfg = file('good.yaml', `token: s3cret\nbackend: backend.example:4317\npolicy: ${policy}\n`);
  const r = spawnSync(process.execPath, [cliPath, 'config', 'check', cfg], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /"backend": "backend\.example:4317"/);
  assert.match(r.stdout, /"token": "\*\*\*"/);
  assert.doesNotMatch(r.stdout, /s3cret/);
  assert.match(r.stdout, /good\.yaml: ok/);
});

test('config check: a bad file or a bad policy it names is one clear line and exit 1', () => {
  const badPolicy = file('bad-policy.yaml', 'signatures:\n  drift.new_script: { severity: URGENT }\n');
  for (const [text, message] of [
    ['includeHost: sometimes\n', /includeHost: expected true or false/],
    [`policy: ${badPolicy}\n`, /signatures\.drift\.new_script\.severity: invalid severity "URGENT"/],
  ] as const) {
    const cfg = file('bad.yaml', text);
    const r = spawnSync(process.execPath, [cliPath, 'config', 'check', cfg], { encoding: 'utf8' });
    assert.equal(r.status, 1, r.stdout);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(String((JSON.parse(lines[0]!) as { msg: string }).msg), message);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

test('run: a bad setting from the environment stops the sensor before it loads anything', () => {
  const r = spawnSync(process.execPath, [cliPath, 'run'], { encoding: 'utf8', env: { ...process.env, DRIFTWATCH_OUTPUT: 'xml' } });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /output: must be jsonl or falco-json \(got xml\)/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});
