/**
 * bin/chokepoint, the command users run: it must set the allocator knob (see its comment for
 * the measurement), leave an operator's own value alone, and exec Node rather than wrap it,
 * so that the PID a supervisor holds is the gateway's (signals reach it; its exit code is the
 * command's).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { killedWithTest } from './helpers/children.js';

const BIN = fileURLToPath(new URL('../../bin/chokepoint', import.meta.url));
const POLICY = fileURLToPath(new URL('../../examples/policy.yaml', import.meta.url));

function environOf(pid: number): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) m.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return m;
}

async function serveThroughBin(env: NodeJS.ProcessEnv): Promise<{ pid: number; env: Map<string, string>; stderr: () => string; stop: () => Promise<number | null> }> {
  const dir = mkdtempSync(join(tmpdir(), 'cp-bin-'));
  // Through a symlink, as npm installs it (node_modules/.bin/chokepoint -> ../chokepoint/bin/chokepoint).
  const link = join(dir, 'chokepoint');
  symlinkSync(BIN, link);
  writeFileSync(join(dir, 'config.yaml'), 'log_level: warn\n');
  const p = killedWithTest(spawn(link, ['serve', '--config', join(dir, 'config.yaml'), '--policy', POLICY, '--proxy-listen', '127.0.0.1:0', '--control-listen', '127.0.0.1:0', '--mtls-listen', 'off', '--data-dir', join(dir, 'data'), '--events', '-'], { stdio: ['ignore', 'pipe', 'pipe'], env }));
  let stderr = '';
  p.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exit = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    const rl = createInterface({ input: p.stdout! });
    rl.on('line', (l) => { if (l.includes('"gateway.started"')) resolve(); });
    void exit.then((c) => reject(new Error(`serve exited ${c}: ${stderr}`)));
  });
  return { pid: p.pid as number, env: environOf(p.pid as number), stderr: () => stderr, stop: async () => { p.kill('SIGTERM'); return exit; } };
}

test('bin/chokepoint runs the CLI through a symlink', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cp-bin-'));
  symlinkSync(BIN, join(dir, 'chokepoint'));
  const r = spawnSync(join(dir, 'chokepoint'), ['--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\d+\.\d+\.\d+/);
});

test('bin/chokepoint: the gateway process itself carries the allocator setting, answers SIGTERM, and does not warn', async () => {
  const env = { ...process.env };
  delete env.MALLOC_TRIM_THRESHOLD_;
  const s = await serveThroughBin(env);
  // The spawned PID is node itself (exec), not a shell waiting on a child.
  assert.match(readFileSync(`/proc/${s.pid}/cmdline`, 'utf8'), /node\0--interrupt-budget=16384\0.*dist\/src\/cli\.js\0serve/);
  assert.equal(s.env.get('MALLOC_TRIM_THRESHOLD_'), '33554432');
  assert.equal(await s.stop(), 0);
  assert.doesNotMatch(s.stderr(), /MALLOC_TRIM_THRESHOLD_ is unset/);
});

test('bin/chokepoint keeps an operator\'s own MALLOC_TRIM_THRESHOLD_', async () => {
  const s = await serveThroughBin({ ...process.env, MALLOC_TRIM_THRESHOLD_: '1048576' });
  assert.equal(s.env.get('MALLOC_TRIM_THRESHOLD_'), '1048576');
  assert.equal(await s.stop(), 0);
});

test('serve started as plain `node dist/src/cli.js` says how to get full throughput', async () => {
  const env = { ...process.env };
  delete env.MALLOC_TRIM_THRESHOLD_;
  const dir = mkdtempSync(join(tmpdir(), 'cp-bin-'));
  writeFileSync(join(dir, 'config.yaml'), 'log_level: warn\n');
  const cli = fileURLToPath(new URL('../src/cli.js', import.meta.url));
  const p = killedWithTest(spawn(process.execPath, [cli, 'serve', '--config', join(dir, 'config.yaml'), '--policy', POLICY, '--proxy-listen', '127.0.0.1:0', '--control-listen', '127.0.0.1:0', '--mtls-listen', 'off', '--data-dir', join(dir, 'data'), '--events', 'none'], { stdio: ['ignore', 'ignore', 'pipe'], env }));
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    p.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); if (/MALLOC_TRIM_THRESHOLD_ is unset/.test(stderr)) resolve(); });
    p.on('exit', (c) => reject(new Error(`exited ${c}: ${stderr}`)));
  });
  p.kill('SIGTERM');
  await new Promise((r) => p.on('exit', r));
  assert.match(stderr, /bin\/chokepoint/);
});
