/** `chokepoint policy propose|push|diff|approve|apply|promote|rollback|history|show` (control API client). */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { action, ApiClient, CliError, out, remote, table, when, type RemoteFlags } from './client.js';

type Flags = RemoteFlags & { reason?: string };

async function readPolicy(file: string): Promise<string> {
  try { return await readFile(file, 'utf8'); } catch (e) { throw new CliError('POLICY_UNREADABLE', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, 2); }
}


function stateLine(r: { applied_version: number | null; pilot_version: number | null; pilot_group: string | null; digest?: string }): string {
  return `applied: v${r.applied_version}${r.pilot_version !== null ? `, pilot: v${r.pilot_version} on group ${r.pilot_group}` : ''}${r.digest ? ` (digest ${r.digest.slice(0, 12)})` : ''}`;
}

export function registerPolicyRemoteCommands(policy: Command): void {
  remote(policy.command('propose <file>').description('propose a policy file as a new version (validated by the server)').requiredOption('--reason <text>', 'why'))
    .action(action(async (file: string, f: Flags) => {
      const r = await new ApiClient(f).call('POST', '/api/v1/policy/versions', { text: await readPolicy(file), reason: f.reason });
      out(f, r, () => `proposed v${r.version} (digest ${r.digest.slice(0, 12)})`);
    }));
  remote(policy.command('push <file>').description('propose a file as a new version and apply it (unless the two-person rule holds it for approval)')
    .requiredOption('--reason <text>', 'why').option('--no-apply', 'only propose'))
    .action(action(async (file: string, f: Flags & { apply: boolean }) => {
      const c = new ApiClient(f);
      const v = await c.call('POST', '/api/v1/policy/versions', { text: await readPolicy(file), reason: f.reason });
      if (!f.apply) { out(f, { proposed: v }, () => `proposed v${v.version}`); return; }
      try {
        const s = await c.call('GET', '/api/v1/policy/state');
        const r = await c.call('POST', '/api/v1/policy/apply', { version: v.version, expected_generation: s.generation });
        out(f, { proposed: v, applied: r }, () => `proposed v${v.version}; ${stateLine(r)}`);
      } catch (e) {
        if (e instanceof CliError && e.code === 'POLICY_APPROVAL_REQUIRED') {
          out(f, { proposed: v, applied: null, awaiting_approval: true }, () => `proposed v${v.version}; awaiting approval by another security-admin (chokepoint policy approve ${v.version})`);
          return;
        }
        throw e;
      }
    }));
  remote(policy.command('diff <to>').description('what a version changes: rules per group, and recent destinations whose verdict would change').option('--from <version>', 'compare with this version (default: the applied one)'))
    .action(action(async (to: string, f: RemoteFlags & { from?: string }) => {
      const r = await new ApiClient(f).call('GET', `/api/v1/policy/diff?to=${encodeURIComponent(to)}${f.from ? `&from=${encodeURIComponent(f.from)}` : ''}`);
      out(f, r, () => {
        const lines = [`diff v${r.from ?? '(none)'} -> v${r.to}`];
        for (const g of r.groups) {
          lines.push(`group ${g.group} (${g.status})${g.mode ? `: mode ${g.mode.from} -> ${g.mode.to}` : ''}`);
          for (const a of g.added) lines.push(`  + ${a}`);
          for (const a of g.removed) lines.push(`  - ${a}`);
        }
        if (r.groups.length === 0) lines.push('no rule changes');
        lines.push(`recent destinations whose verdict changes (of ${r.replayed} replayed):`);
        for (const d of r.destinations) lines.push(`  ${d.group ?? '-'} ${d.host}:${d.port}  ${d.from.verdict}/${d.from.reason} -> ${d.to.verdict}/${d.to.reason}`);
        if (r.destinations.length === 0) lines.push('  none');
        return lines.join('\n');
      });
    }));
  remote(policy.command('approve <version>').description('approve a version (two-person rule: not your own)'))
    .action(action(async (v: string, f: RemoteFlags) => {
      const r = await new ApiClient(f).call('POST', `/api/v1/policy/versions/${encodeURIComponent(v)}/approve`);
      out(f, r, () => `v${r.version} approved by ${r.approvals.join(', ')}`);
    }));
  remote(policy.command('apply <version>').description('apply a version to every group, or with --pilot to one group first').option('--pilot <group>', 'staged rollout: only this group').option('--reason <text>', 'why'))
    .action(action(async (v: string, f: Flags & { pilot?: string }) => {
      const c = new ApiClient(f);
      const s = await c.call('GET', '/api/v1/policy/state');
      const r = await c.call('POST', '/api/v1/policy/apply', { version: Number(v), ...(f.pilot ? { pilot_group: f.pilot } : {}), ...(f.reason ? { reason: f.reason } : {}), expected_generation: s.generation });
      out(f, r, () => stateLine(r));
    }));
  remote(policy.command('promote').description('apply the pilot version to every group').option('--reason <text>', 'why'))
    .action(action(async (f: Flags) => {
      const c = new ApiClient(f);
      const s = await c.call('GET', '/api/v1/policy/state');
      const r = await c.call('POST', '/api/v1/policy/promote', { expected_generation: s.generation, ...(f.reason ? { reason: f.reason } : {}) });
      out(f, r, () => stateLine(r));
    }));
  remote(policy.command('rollback <version>').description('apply an earlier (previously applied) version to every group').option('--reason <text>', 'why'))
    .action(action(async (v: string, f: Flags) => {
      const c = new ApiClient(f);
      const s = await c.call('GET', '/api/v1/policy/state');
      const r = await c.call('POST', '/api/v1/policy/rollback', { version: Number(v), expected_generation: s.generation, ...(f.reason ? { reason: f.reason } : {}) });
      out(f, r, () => stateLine(r));
    }));
  remote(policy.command('history').description('policy versions, newest first').option('--limit <n>', 'how many', '20'))
    .action(action(async (f: RemoteFlags & { limit: string }) => {
      const c = new ApiClient(f);
      const [r, s] = await Promise.all([c.call('GET', `/api/v1/policy/versions?limit=${encodeURIComponent(f.limit)}`), c.call('GET', '/api/v1/policy/state')]);
      out(f, { ...r, state: s }, () => table(r.items.map((v: Record<string, unknown>) => ({
        ...v, version: `v${v.version}${v.version === s.applied_version ? ' *' : ''}${v.version === s.pilot_version ? ' (pilot)' : ''}`, created: when(v.created_at as number), digest: String(v.digest).slice(0, 12),
      })), ['version', 'created', 'author', 'digest', 'reason']));
    }));
  remote(policy.command('show <version>').description('print a version\'s YAML'))
    .action(action(async (v: string, f: RemoteFlags) => {
      const r = await new ApiClient(f).call('GET', `/api/v1/policy/versions/${encodeURIComponent(v)}`);
      out(f, r, () => r.text.replace(/\n$/, ''));
    }));
}

