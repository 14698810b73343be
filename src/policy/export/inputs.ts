/**
 * Inputs of the host egress rule exporters: the policy's validated model and the deployment's
 * gateway and resolver addresses. Host firewalls match addresses, not names, so every endpoint
 * must be an IP literal: resolving a gateway name at export time would freeze whatever DNS
 * said that day into the ruleset (and let a tampered resolver choose the allowed address).
 */
import { parseDocument } from 'yaml';
import { ChokepointError, formatProblem } from '../../core/errors.js';
import { analyze, type GroupModel, type Model } from '../analyze.js';
import { formatIp, parseIp, type Ip } from '../cidr.js';
import { loadPolicy } from '../load.js';

export interface Endpoint {
  readonly ip: Ip;
  /** Canonical text without brackets. */
  readonly address: string;
  readonly port: number;
}

export interface ExportInput {
  readonly model: Model;
  /** sha256 of the policy text, written into the output so an operator can tie rules to a policy. */
  readonly digest: string;
  readonly gateways: readonly Endpoint[];
  readonly resolvers: readonly Endpoint[];
  /** null: every group. */
  readonly group: string | null;
}

function invalid(message: string): ChokepointError {
  return new ChokepointError('EXPORT_INVALID', message);
}

/** Parses `HOST:PORT` where HOST is an IPv4 literal or a bracketed IPv6 literal. */
export function parseEndpoint(text: string, defaultPort: number | null, what: string): Endpoint {
  const t = text.trim();
  let host = t;
  let portText: string | null = null;
  if (t.startsWith('[')) {
    const end = t.indexOf(']');
    if (end < 0) throw invalid(`${what} "${text}": unterminated "["`);
    host = t.slice(1, end);
    const rest = t.slice(end + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw invalid(`${what} "${text}": expected ":PORT" after "]"`);
      portText = rest.slice(1);
    }
  } else if (t.split(':').length === 2) {
    [host, portText] = t.split(':') as [string, string];
  } else if (t.includes(':')) {
    throw invalid(`${what} "${text}": write an IPv6 address in brackets, e.g. "[2001:db8::1]:3129"`);
  }
  const ip = parseIp(host);
  if (ip === null) {
    throw invalid(`${what} "${text}": "${host}" is not an IP address; host firewall rules match addresses, so name the gateway by its address (a name resolved now could change, or be spoofed)`);
  }
  let port = defaultPort;
  if (portText !== null) {
    port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) throw invalid(`${what} "${text}": port must be 1 to 65535`);
  }
  if (port === null) throw invalid(`${what} "${text}": a port is required (HOST:PORT)`);
  return { ip, address: formatIp(ip), port };
}

export function parseEndpointList(text: string | undefined, defaultPort: number | null, what: string): Endpoint[] {
  if (text === undefined || text.trim() === '') return [];
  const seen = new Set<string>();
  const out: Endpoint[] = [];
  for (const part of text.split(',')) {
    const e = parseEndpoint(part, defaultPort, what);
    const k = `${e.address} ${e.port}`;
    if (!seen.has(k)) { seen.add(k); out.push(e); }
  }
  return out;
}

/**
 * Validates the policy with the same loader as `serve`, then takes its model. A policy that
 * does not load is an error: exporting rules from a policy the gateway would refuse would
 * describe a world that does not exist.
 */
export function policyModel(text: string, sourceName: string): { model: Model; digest: string } {
  const r = loadPolicy(text, { sourceName });
  if (!r.ok) {
    throw new ChokepointError('POLICY_INVALID', `${sourceName}: ${r.problems.map(formatProblem).join('; ')}`, { problems: r.problems });
  }
  const raw: unknown = parseDocument(text, { version: '1.2', schema: 'core', merge: false }).toJS({ maxAliasCount: 20 });
  return { model: analyze(raw).model, digest: r.policy.digest };
}

/** The groups to export; an unknown `--group` is an error naming the ones that exist. */
export function selectGroups(input: ExportInput): readonly GroupModel[] {
  if (input.group === null) return input.model.groups;
  const g = input.model.groups.find((x) => x.name === input.group);
  if (g === undefined) {
    throw invalid(`group "${input.group}" is not in the policy (groups: ${input.model.groups.map((x) => x.name).join(', ') || 'none'})`);
  }
  return [g];
}

export function requireGateways(input: ExportInput): void {
  if (input.gateways.length === 0) throw invalid('at least one --gateway HOST:PORT is required: without it the rules would allow nothing out at all');
}
