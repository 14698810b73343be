/**
 * `chokepoint ca init|import|status|rotate`: the device CA in the data directory. These work on
 * local files only (the CA key never travels over the API). A passphrase comes from
 * `--passphrase-file` or CHOKEPOINT_CA_PASSPHRASE, never from a flag (flags show in `ps`).
 */
import { readFileSync, statSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ChokepointError } from '../core/errors.js';
import { describeCa, importCa, initCa, rotateCa } from '../identity/ca.js';
import { caDir, readState } from '../identity/ca-files.js';

interface CaFlags {
  dataDir?: string;
  passphraseFile?: string;
  json?: boolean;
}

export function caPassphrase(file: string | undefined): string | undefined {
  if (file !== undefined) {
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new ChokepointError('USAGE', `cannot read the passphrase file ${file}: ${(err as Error).message}`);
    }
  }
  const env = process.env.CHOKEPOINT_CA_PASSPHRASE;
  return env === undefined || env === '' ? undefined : env;
}

function readInput(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ChokepointError('USAGE', `cannot read the ${what} ${file}: ${(err as Error).message}`);
  }
}

function print(f: CaFlags, obj: unknown, text: () => string): void {
  process.stdout.write(f.json ? `${JSON.stringify(obj, null, 2)}\n` : `${text()}\n`);
}

function run<A extends unknown[]>(fn: (...a: A) => Promise<void>): (...a: A) => Promise<void> {
  return async (...a) => {
    try {
      await fn(...a);
    } catch (err) {
      if (err instanceof ChokepointError) {
        process.stderr.write(`chokepoint: ${err.message} [${err.code}]\n`);
        process.exitCode = err.code === 'USAGE' ? 2 : 1;
        return;
      }
      throw err;
    }
  };
}

const dataDirOf = (f: CaFlags) => f.dataDir ?? './data';

/** What `ca status` shows: every CA with its state, without reading (or needing) any key. */
export function caStatus(dataDir: string): Record<string, unknown>[] {
  return readState(dataDir).cas.map((e) => {
    const dir = caDir(dataDir, e.id);
    const cert = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
    let keyMode = 'missing';
    try {
      keyMode = (statSync(join(dir, 'key.pem')).mode & 0o777).toString(8).padStart(4, '0');
    } catch {
      // reported as missing
    }
    return {
      id: e.id, state: e.state, subject: cert.subject.replace(/\n/g, ', '), not_after: new Date(cert.validTo).toISOString(),
      sha256: cert.fingerprint256.replace(/:/g, '').toLowerCase(), key_mode: keyMode, key_ok: keyMode === '0600',
    };
  });
}

export function registerCaCommands(program: Command): void {
  const ca = program.command('ca').description('the device CA in the data directory (local files; the key never leaves them)');
  const common = (c: Command) => c
    .option('--data-dir <dir>', 'state directory (default ./data)')
    .option('--passphrase-file <file>', 'file holding the CA key passphrase (or set CHOKEPOINT_CA_PASSPHRASE)')
    .option('--json', 'machine-readable output');

  common(ca.command('init').description('create an ECDSA P-256 CA (key file mode 0600, encrypted when a passphrase is given)'))
    .option('--cn <name>', 'CA common name')
    .option('--days <n>', 'validity in days (default 3650)')
    .action(run(async (f: CaFlags & { cn?: string; days?: string }) => {
      const days = f.days === undefined ? undefined : Number(f.days);
      if (days !== undefined && (!Number.isInteger(days) || days < 1 || days > 36_500)) throw new ChokepointError('USAGE', '--days must be an integer between 1 and 36500');
      const c = await initCa({ dataDir: dataDirOf(f), passphrase: caPassphrase(f.passphraseFile), commonName: f.cn, validityDays: days });
      print(f, describeCa(c), () => `created CA ${c.id} in ${join(dataDirOf(f), 'ca')}\nsubject: ${c.cert.subject.replace(/\n/g, ', ')}\nsha256: ${c.fingerprint256}   (agents pin this)`);
    }));

  common(ca.command('import').description('import an intermediate CA (certificate, optionally followed by its chain) and its key'))
    .requiredOption('--cert <file>', 'CA certificate PEM; the chain up to the root may follow it')
    .requiredOption('--key <file>', 'the CA private key (PEM, PKCS#8 or SEC1; EC P-256 or P-384)')
    .option('--key-passphrase-file <file>', 'passphrase of the key being imported, if it is encrypted')
    .action(run(async (f: CaFlags & { cert: string; key: string; keyPassphraseFile?: string }) => {
      const c = await importCa({
        dataDir: dataDirOf(f), passphrase: caPassphrase(f.passphraseFile), certPem: readInput(f.cert, 'certificate'), keyPem: readInput(f.key, 'key'),
        keyPassphrase: f.keyPassphraseFile === undefined ? undefined : caPassphrase(f.keyPassphraseFile),
      });
      print(f, describeCa(c), () => `imported CA ${c.id}\nsubject: ${c.cert.subject.replace(/\n/g, ', ')}\nsha256: ${c.fingerprint256}`);
    }));

  common(ca.command('status').description('show the CAs (active, next, retired) and whether their key files are private'))
    .action(run(async (f: CaFlags) => {
      const rows = caStatus(dataDirOf(f));
      if (rows.length === 0) throw new ChokepointError('CA_MISSING', `no CA in ${join(dataDirOf(f), 'ca')}: run \`chokepoint ca init\``);
      print(f, rows, () => rows.map((r) => `${String(r.state).padEnd(8)} ${r.id}  ${r.subject}  until ${r.not_after}\n         sha256 ${r.sha256}  key ${r.key_mode}${r.key_ok ? '' : '  (INSECURE: chmod 600)'}`).join('\n'));
      if (rows.some((r) => !r.key_ok)) process.exitCode = 1;
    }));

  common(ca.command('rotate').description('stage a next CA, promote it to active (the old one is retired, still trusted), or drop retired CAs'))
    .option('--stage', 'create the next CA (trusted and published, not issuing)')
    .option('--promote', 'make the next CA issue; retire the active one')
    .option('--drop', 'stop trusting retired CAs and delete their keys')
    .action(run(async (f: CaFlags & { stage?: boolean; promote?: boolean; drop?: boolean }) => {
      const steps = (['stage', 'promote', 'drop'] as const).filter((s) => f[s]);
      if (steps.length !== 1) throw new ChokepointError('USAGE', 'give exactly one of --stage, --promote, --drop');
      const cas = await rotateCa({ dataDir: dataDirOf(f), passphrase: caPassphrase(f.passphraseFile), step: steps[0] as 'stage' });
      print(f, cas, () => `${steps[0]}: done; restart or reload \`chokepoint serve\` to apply\n${cas.map((c) => `${c.state.padEnd(8)} ${c.id}`).join('\n')}`);
    }));
}
