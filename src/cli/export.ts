/**
 * `chokepoint policy export`: host egress rules from a policy and the deployment's addresses.
 */
import { readFile } from 'node:fs/promises';
import { ChokepointError, ERROR_CODES } from '../core/errors.js';
import { exportNftables, exportSquid, exportWindowsFirewall, parseEndpointList, policyModel, type ExportInput } from '../policy/export/index.js';

export type ExportFormat = 'nftables' | 'windows-firewall' | 'squid';

export interface ExportOptions {
  format: ExportFormat;
  policy: string;
  group?: string;
  gateway?: string;
  resolver?: string;
  program?: string;
}

export async function renderExport(opts: ExportOptions): Promise<string> {
  let text: string;
  try {
    text = await readFile(opts.policy, 'utf8');
  } catch (e) {
    throw new ChokepointError('POLICY_UNREADABLE', `${opts.policy}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const { model, digest } = policyModel(text, opts.policy);
  const input: ExportInput = {
    model, digest,
    gateways: parseEndpointList(opts.gateway, null, '--gateway'),
    resolvers: parseEndpointList(opts.resolver, 53, '--resolver'),
    group: opts.group ?? null,
  };
  switch (opts.format) {
    case 'nftables': return exportNftables(input);
    case 'squid': return exportSquid(input);
    case 'windows-firewall':
      if (opts.program === undefined) throw new ChokepointError('USAGE', '--format windows-firewall needs --program PATH (the agent binary to fence)');
      return exportWindowsFirewall({ ...input, program: opts.program });
    default: throw new ChokepointError('USAGE', `unknown format ${String(opts.format)}`);
  }
}

export async function policyExportCommand(opts: ExportOptions): Promise<void> {
  try {
    process.stdout.write(await renderExport(opts));
  } catch (e) {
    if (e instanceof ChokepointError) {
      process.stderr.write(`chokepoint: ${e.code}: ${e.message}\n`);
      process.exitCode = e.code === 'EXPORT_INVALID' || e.code === 'USAGE' ? 2 : 1;
      return;
    }
    process.stderr.write(`chokepoint: INTERNAL: ${ERROR_CODES.INTERNAL}\n`);
    process.exitCode = 2;
  }
}
