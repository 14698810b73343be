/** `chokepoint admin create|list|token|disable|revoke-token`: admins and their API tokens. */
import type { Command } from 'commander';
import { dataDirOf, loadConfig } from '../config/load.js';
import { parseDuration } from '../config/duration.js';
import { ChokepointError } from '../core/errors.js';
import { recoverAdmin } from '../store/admins.js';
import { openStore } from '../store/open.js';
import { action, ApiClient, CliError, out, remote, table, when, type RemoteFlags } from './client.js';

export function registerAdminCommands(program: Command): void {
  const admin = program.command('admin').description('administrators and their API tokens (control API client)');
  remote(admin.command('create <name>').description('create an admin; prints its API token once')
    .requiredOption('--role <role>', 'viewer | operator | security-admin')
    .option('--scope <group...>', 'restrict to these device groups')
    .option('--ttl <duration>', 'token lifetime (default 90d)'))
    .action(action(async (name: string, f: RemoteFlags & { role: string; scope?: string[]; ttl?: string }) => {
      const r = await new ApiClient(f).call('POST', '/api/v1/admins', { name, role: f.role, scopes: f.scope ?? null, ...(f.ttl ? { token_ttl: f.ttl } : {}) });
      out(f, r, () => `created ${r.role} ${r.name}\ntoken (shown once; store it now): ${r.token}\nexpires: ${when(r.expires_at)}`);
    }));
  remote(admin.command('list').description('list admins'))
    .action(action(async (f: RemoteFlags) => {
      const r = await new ApiClient(f).call('GET', '/api/v1/admins');
      out(f, r, () => table(r.items, ['name', 'role', 'scopes', 'disabled', 'created_by']));
    }));
  remote(admin.command('token <name>').description('issue another API token for an admin; prints it once').option('--ttl <duration>', 'token lifetime (default 90d)'))
    .action(action(async (name: string, f: RemoteFlags & { ttl?: string }) => {
      const r = await new ApiClient(f).call('POST', `/api/v1/admins/${encodeURIComponent(name)}/tokens`, f.ttl ? { token_ttl: f.ttl } : {});
      out(f, r, () => `token id ${r.token_id}\ntoken (shown once): ${r.token}\nexpires: ${when(r.expires_at)}`);
    }));
  remote(admin.command('tokens').description('list API tokens (metadata only)').option('--admin <name>', 'only this admin'))
    .action(action(async (f: RemoteFlags & { admin?: string }) => {
      const r = await new ApiClient(f).call('GET', `/api/v1/tokens${f.admin ? `?admin=${encodeURIComponent(f.admin)}` : ''}`);
      out(f, r, () => table(r.items.map((t: Record<string, number>) => ({ ...t, expires: when(t.expires_at), revoked: when(t.revoked_at), 'last used': when(t.last_used_at) })), ['id', 'admin', 'label', 'expires', 'revoked', 'last used']));
    }));
  remote(admin.command('revoke-token <id>').description('revoke an API token'))
    .action(action(async (id: string, f: RemoteFlags) => {
      const r = await new ApiClient(f).call('DELETE', `/api/v1/tokens/${encodeURIComponent(id)}`);
      out(f, r, () => `revoked token ${id}`);
    }));
  admin.command('recover').description('break glass, on the server: create a new security-admin straight in the store and print its token (audited as local:recover); for when no security-admin token works any more')
    .option('-c, --config <file>', 'the gateway\'s configuration file (for data_dir / database)')
    .option('--data-dir <dir>', 'state directory holding the SQLite store (default ./data)')
    .option('--database <url>', 'PostgreSQL store (postgres://…)')
    .option('--name <name>', 'the new admin\'s name (default recovery-<UTC time>)')
    .option('--ttl <duration>', 'token lifetime (default 1d: issue a regular token with it, then disable it)', '1d')
    .option('--json', 'machine-readable output')
    .action(action(async (f: { config?: string; dataDir?: string; database?: string; name?: string; ttl: string; json?: boolean }) => {
      const ttlMs = parseDuration(f.ttl);
      if (ttlMs === null || ttlMs < 60_000 || ttlMs > 366 * 86_400_000) throw new CliError('USAGE', '--ttl must be a duration from 1m to 366d (e.g. 1d)', 2);
      const name = f.name ?? `recovery-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}`;
      if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(name)) throw new CliError('USAGE', '--name: use letters, digits, ".", "_", "@", "-" (at most 64)', 2);
      try {
        const config = loadConfig(f.config, { data_dir: f.dataDir, database: f.database });
        const store = await openStore({ dataDir: dataDirOf(config), database: config.database });
        try {
          const r = await recoverAdmin(store, { name, ttlMs, by: `uid ${process.getuid?.() ?? '?'} on ${process.env.HOSTNAME ?? 'this host'}` });
          out(f, r, () => `created security-admin ${r.name} (audited as local:recover)\ntoken (shown once; store it now): ${r.token}\nexpires: ${when(r.expires_at)}\nnext: issue the admins you need with it, then \`chokepoint admin disable ${r.name}\``);
        } finally {
          await store.close();
        }
      } catch (err) {
        if (err instanceof ChokepointError) throw new CliError(err.code, err.message, err.code === 'USAGE' ? 2 : 1);
        throw err;
      }
    }));
  remote(admin.command('disable <name>').description('disable an admin (all its tokens stop working)'))
    .action(action(async (name: string, f: RemoteFlags) => {
      const r = await new ApiClient(f).call('POST', `/api/v1/admins/${encodeURIComponent(name)}/disable`);
      out(f, r, () => `disabled ${name}`);
    }));
}
