/** `chokepoint device list|show|tag|disable|enable|revoke|approve|deny` (control API client). */
import type { Command } from 'commander';
import { action, ApiClient, out, remote, table, when, type RemoteFlags } from './client.js';

const enc = encodeURIComponent;

export function registerDeviceCommands(program: Command): void {
  const device = program.command('device').description('enrolled devices (control API client)');
  remote(device.command('list').description('list devices').option('--group <group>').option('--tag <tag>').option('--state <state>', 'pending | active | disabled | revoked').option('--limit <n>', 'page size', '100'))
    .action(action(async (f: RemoteFlags & { group?: string; tag?: string; state?: string; limit: string }) => {
      const c = new ApiClient(f);
      const q = new URLSearchParams({ limit: f.limit });
      if (f.group) q.set('group', f.group);
      if (f.tag) q.set('tag', f.tag);
      if (f.state) q.set('state', f.state);
      const r = await c.call('GET', `/api/v1/devices?${q}`);
      out(f, r, () => table(r.items.map((d: Record<string, number>) => ({ ...d, seen: when(d.last_seen_at) })), ['id', 'group_name', 'state', 'asset_id', 'tags', 'seen']));
    }));
  remote(device.command('show <id>').description('one device with its certificates'))
    .action(action(async (id: string, f: RemoteFlags) => {
      const d = await new ApiClient(f).call('GET', `/api/v1/devices/${enc(id)}`);
      out(f, d, () => [
        `device ${d.id}`, `group: ${d.group_name}`, `state: ${d.state}`, `asset: ${d.asset_id ?? '-'}`, `tags: ${d.tags.join(', ') || '-'}`,
        `created: ${when(d.created_at)}  last seen: ${when(d.last_seen_at)}`,
        d.pending_request ? `pending enrollment request ${d.pending_request.id}` : '',
        'certificates:', table(d.certificates.map((x: Record<string, number>) => ({ ...x, not_after: when(x.not_after), revoked: when(x.revoked_at) })), ['serial', 'not_after', 'revoked', 'revocation_reason']),
      ].filter((l) => l !== '').join('\n'));
    }));
  remote(device.command('tag <id> [tags...]').description('set a device\'s tags (replaces them) and/or asset id').option('--asset <id>', 'asset id ("" to clear)'))
    .action(action(async (id: string, tags: string[], f: RemoteFlags & { asset?: string }) => {
      const body: Record<string, unknown> = {};
      if (tags.length > 0) body.tags = tags;
      if (f.asset !== undefined) body.asset_id = f.asset === '' ? null : f.asset;
      const r = await new ApiClient(f).call('PATCH', `/api/v1/devices/${enc(id)}`, body);
      out(f, r, () => `device ${r.id}: tags ${r.tags.join(', ') || '-'}, asset ${r.asset_id ?? '-'}`);
    }));
  for (const verb of ['disable', 'enable', 'revoke'] as const) {
    remote(device.command(`${verb} <id>`).description(`${verb} a device`).option('--reason <text>', 'why'))
      .action(action(async (id: string, f: RemoteFlags & { reason?: string }) => {
        const r = await new ApiClient(f).call('POST', `/api/v1/devices/${enc(id)}/${verb}`, f.reason ? { reason: f.reason } : {});
        out(f, r, () => `device ${r.id}: ${r.state}${r.revoked_serials?.length ? ` (revoked certificates ${r.revoked_serials.join(', ')})` : ''}`);
      }));
  }
  for (const verb of ['approve', 'deny'] as const) {
    remote(device.command(`${verb} <id>`).description(`${verb} a device's pending enrollment request`))
      .action(action(async (id: string, f: RemoteFlags) => {
        const r = await new ApiClient(f).call('POST', `/api/v1/devices/${enc(id)}/${verb}`, {});
        out(f, r, () => `device ${r.device_id}: enrollment request ${r.state}`);
      }));
  }
}
