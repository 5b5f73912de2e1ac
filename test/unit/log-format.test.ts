// `driftwatch run` logs readable lines on a terminal and JSON lines otherwise
// (or when --log-format json is given), shown with a real pseudo-terminal.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { effectiveLogFormat, logFormatFromArgs, prettyLine } from '../../src/log.js';
import { cliPath } from '../helpers/sensor-process.js';

const node = process.execPath;
// a run that logs one error and exits before touching the kernel
const failingRun = (extra: string) => `${node} ${cliPath} run ${extra} --policy /nonexistent/driftwatch-policy.yaml`;

/** Runs a shell command on a pseudo-terminal (util-linux `script`); returns what the terminal showed. */
function onTerminal(cmd: string, env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  assert.equal(r.error, undefined);
  return r.stdout.replace(/\r/g, '');
}

const scriptSkip = spawnSync('script', ['--version']).status === 0 ? undefined : 'util-linux script is not installed';

test('log format: readable lines on a terminal', { skip: scriptSkip }, () => {
  const out = onTerminal(failingRun(''), { NO_COLOR: '' });
  assert.match(out, /^\d\d:\d\d:\d\d\.\d{3} \x1b\[31mERROR\x1b\[0m \/nonexistent\/driftwatch-policy\.yaml: ENOENT/m);
  assert.doesNotMatch(out, /"level"/);
  const plain = onTerminal(failingRun(''), { NO_COLOR: '1' });
  assert.match(plain, /^\d\d:\d\d:\d\d\.\d{3} ERROR {1}\/nonexistent/m, 'NO_COLOR drops the colour');
});

test('log format: JSON on a terminal with --log-format json', { skip: scriptSkip }, () => {
  const out = onTerminal(failingRun('--log-format json'));
  const line = JSON.parse(out.trim().split('\n').at(-1)!) as { level: number; msg: string };
  assert.equal(line.level, 50);
  assert.match(line.msg, /driftwatch-policy\.yaml: ENOENT/);
});

test('log format: JSON when stderr is not a terminal', () => {
  const r = spawnSync(node, [cliPath, 'run', '--policy', '/nonexistent/driftwatch-policy.yaml'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 1);
  const line = JSON.parse(r.stderr.trim()) as { level: number; msg: string };
  assert.equal(line.level, 50);
});

test('log format: a bad --log-format is an error that names the key', () => {
  const r = spawnSync(node, [cliPath, 'run', '--log-format', 'xml'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /logFormat: must be one of auto, json, pretty \(got xml\)/);
});

test('log format: auto follows the terminal; flags and environment are read early', () => {
  assert.equal(effectiveLogFormat('auto', true), 'pretty');
  assert.equal(effectiveLogFormat('auto', false), 'json');
  assert.equal(effectiveLogFormat('json', true), 'json');
  assert.equal(logFormatFromArgs(['--log-format', 'json'], {}), 'json');
  assert.equal(logFormatFromArgs(['--log-format=pretty'], { DRIFTWATCH_LOG_FORMAT: 'json' }), 'pretty');
  assert.equal(logFormatFromArgs([], { DRIFTWATCH_LOG_FORMAT: 'json' }), 'json');
  assert.equal(logFormatFromArgs(['--log-format', 'xml'], {}), 'auto');
  const at = new Date(2026, 0, 2, 3, 4, 5, 6);
  assert.equal(prettyLine('warn', 'slow', at, false), '03:04:05.006 WARN  slow\n');
});
