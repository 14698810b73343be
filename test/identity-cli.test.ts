/** `chokepoint ca …` as a user runs it: the real binary, real files, exit codes and messages. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCaSet } from '../src/identity/ca.js';
import { tempDir } from './helpers/pki.js';

const cli = new URL('../src/cli.js', import.meta.url).pathname;
const run = (args: string[], env: Record<string, string> = {}) => {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, CHOKEPOINT_CA_PASSPHRASE: '', ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('chokepoint ca', () => {
  it('init, status, refusal of a second init and of an insecure key, rotation', () => {
    const d = tempDir();
    try {
      const init = run(['ca', 'init', '--data-dir', d.path, '--json']);
      assert.equal(init.code, 0, init.err);
      const info = JSON.parse(init.out) as { sha256: string; state: string };
      assert.equal(info.state, 'active');
      assert.doesNotMatch(init.out + init.err, /PRIVATE KEY/);
      const again = run(['ca', 'init', '--data-dir', d.path]);
      assert.equal(again.code, 1);
      assert.match(again.err, /\[CA_EXISTS\]/);
      const st = run(['ca', 'status', '--data-dir', d.path, '--json']);
      assert.equal(st.code, 0);
      assert.equal((JSON.parse(st.out) as { sha256: string }[])[0]?.sha256, info.sha256);
      const id = readdirSync(join(d.path, 'ca')).find((n) => n !== 'state.json') as string;
      chmodSync(join(d.path, 'ca', id, 'key.pem'), 0o644);
      const insecure = run(['ca', 'status', '--data-dir', d.path]);
      assert.equal(insecure.code, 1);
      assert.match(insecure.out, /INSECURE/);
      chmodSync(join(d.path, 'ca', id, 'key.pem'), 0o600);
      assert.equal(run(['ca', 'rotate', '--data-dir', d.path]).code, 2);
      assert.equal(run(['ca', 'rotate', '--stage', '--data-dir', d.path]).code, 0);
      assert.equal(run(['ca', 'rotate', '--promote', '--data-dir', d.path]).code, 0);
      const states = (JSON.parse(run(['ca', 'status', '--data-dir', d.path, '--json']).out) as { state: string }[]).map((r) => r.state).sort();
      assert.deepEqual(states, ['active', 'retired']);
    } finally {
      d.cleanup();
    }
  });

  it('a passphrase from a file or the environment encrypts the key', async () => {
    const d = tempDir();
    try {
      writeFileSync(join(d.path, 'pass'), 's3cret\n', { mode: 0o600 });
      const r = run(['ca', 'init', '--data-dir', join(d.path, 'data'), '--passphrase-file', join(d.path, 'pass')]);
      assert.equal(r.code, 0, r.err);
      const id = readdirSync(join(d.path, 'data', 'ca')).find((n) => n !== 'state.json') as string;
      assert.match(readFileSync(join(d.path, 'data', 'ca', id, 'key.pem'), 'utf8'), /ENCRYPTED PRIVATE KEY/);
      await loadCaSet({ dataDir: join(d.path, 'data'), passphrase: 's3cret' });
      const wrong = run(['ca', 'rotate', '--stage', '--data-dir', join(d.path, 'data')], { CHOKEPOINT_CA_PASSPHRASE: 'nope' });
      assert.equal(wrong.code, 0, 'staging does not need the old key');
      const env = run(['ca', 'init', '--data-dir', join(d.path, 'other')], { CHOKEPOINT_CA_PASSPHRASE: 'from-env' });
      assert.equal(env.code, 0);
      await loadCaSet({ dataDir: join(d.path, 'other'), passphrase: 'from-env' });
    } finally {
      d.cleanup();
    }
  });
});
