import { isIP } from 'node:net';
import { formatProblem, type Problem } from '../core/errors.js';
import { formatDestination, parseAuthority } from '../core/destination.js';
import { REASONS } from '../core/reasons.js';
import { loadPolicyFile } from '../policy/index.js';
import type { Protocol } from '../policy/types.js';

export async function policyCheckCommand(file: string, opts: { json?: boolean }): Promise<void> {
  const r = await loadPolicyFile(file);
  const problems: readonly Problem[] = r.ok ? [] : r.problems;
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ file, ok: r.ok, problems, warnings: r.warnings, digest: r.ok ? r.policy.digest : null }, null, 2)}\n`);
  } else {
    for (const p of problems) process.stdout.write(`${file}: error: ${formatProblem(p)}\n`);
    for (const w of r.warnings) process.stdout.write(`${file}: warning: ${formatProblem(w)}\n`);
    if (r.ok) process.stdout.write(`${file}: ok (${r.policy.groups.length} group${r.policy.groups.length === 1 ? '' : 's'}, digest ${r.policy.digest.slice(0, 12)})\n`);
    else process.stdout.write(`${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n`);
  }
  if (!r.ok) process.exitCode = 1;
}

export async function policyTestCommand(file: string, opts: { source: string; dest: string; protocol: Protocol; json?: boolean }): Promise<void> {
  const r = await loadPolicyFile(file);
  if (!r.ok) {
    for (const p of r.problems) process.stderr.write(`${file}: error: ${formatProblem(p)}\n`);
    process.exitCode = 2;
    return;
  }
  if (isIP(opts.source) === 0) {
    process.stderr.write(`--source: "${opts.source}" is not an IP address\n`);
    process.exitCode = 2;
    return;
  }
  const d = parseAuthority(opts.dest, opts.protocol === 'http' ? 80 : 443);
  if (!d.ok) {
    process.stderr.write(`--dest: ${d.error}\n`);
    process.exitCode = 2;
    return;
  }
  const policy = r.policy;
  const group = policy.groupForSource(opts.source);
  let out: Record<string, unknown>;
  if (group === null) {
    out = { verdict: 'deny', reason: 'unauthenticated', rule: null, group: null };
  } else {
    const dec = policy.decide({ group, dest: d.dest, protocol: opts.protocol });
    out = { verdict: dec.verdict, reason: dec.reason, rule: dec.ruleId, group: group.name, mode: group.mode, tls: dec.tls };
    if (dec.verdict === 'allow' && d.dest.kind !== 'name') {
      const av = policy.checkAddress(d.dest.host);
      if (!av.allowed) out = { ...out, verdict: 'deny', reason: 'address_denied', address_class: av.class };
    }
    if (group.mode === 'report' && out.verdict === 'deny') out = { ...out, verdict: 'allow', would_deny: true };
  }
  out = { destination: formatDestination(d.dest), ...out };
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else {
    const reason = String(out.reason);
    process.stdout.write(
      `${String(out.verdict).toUpperCase()} ${out.destination} from ${opts.source}\n` +
      `  reason: ${reason}${out.would_deny ? ' (report mode: would be denied)' : ''}\n` +
      `  rule:   ${out.rule ?? '-'}\n` +
      `  group:  ${out.group ?? '-'}${out.mode ? ` (${String(out.mode)})` : ''}\n` +
      (out.tls ? `  tls:    ${String(out.tls)}\n` : '') +
      (reason in REASONS && out.verdict === 'deny' ? `  hint:   ${REASONS[reason as keyof typeof REASONS].hint}\n` : '') +
      (d.dest.kind === 'name' && out.verdict === 'allow' ? '  note:   resolved addresses are checked at connect time (private, loopback, metadata… are refused)\n' : ''),
    );
  }
  process.exitCode = out.verdict === 'allow' ? 0 : 1;
}
