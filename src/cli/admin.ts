/** `chokepoint admin create|list|token|disable|revoke-token`: admins and their API tokens. */
import type { Command } from 'commander';
import { action, ApiClient, out, remote, table, when, type RemoteFlags } from './client.js';

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
      out(f, r, () => table(r.items.map((t: Record<string, number>) => ({ ...t, expires: when(t.expires_at), revoked: when(t.revoked_at) })), ['id', 'admin', 'label', 'expires', 'revoked']));
    }));
  remote(admin.command('revoke-token <id>').description('revoke an API token'))
    .action(action(async (id: string, f: RemoteFlags) => {
      const r = await new ApiClient(f).call('DELETE', `/api/v1/tokens/${encodeURIComponent(id)}`);
      out(f, r, () => `revoked token ${id}`);
    }));
  remote(admin.command('disable <name>').description('disable an admin (all its tokens stop working)'))
    .action(action(async (name: string, f: RemoteFlags) => {
      const r = await new ApiClient(f).call('POST', `/api/v1/admins/${encodeURIComponent(name)}/disable`);
      out(f, r, () => `disabled ${name}`);
    }));
}
