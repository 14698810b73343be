/**
 * An in-process control server on a real store (SQLite or PostgreSQL), with one admin per role
 * and a scoped operator, for inject()-based API tests.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { buildControlServer, type PolicyMeta } from '../../src/control/index.js';
import { EventBus } from '../../src/events/bus.js';
import type { ChokepointEvent } from '../../src/events/catalogue.js';
import type { CompiledPolicy } from '../../src/policy/index.js';
import { bootstrapAdmin, type Store } from '../../src/store/index.js';
import type { TestBackend } from './store.js';

export interface ApiAnswer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Record<string, unknown>;
}

export interface TestControl {
  readonly app: FastifyInstance;
  readonly store: Store;
  readonly bus: EventBus;
  readonly events: ChokepointEvent[];
  readonly applied: { compiled: CompiledPolicy; meta: PolicyMeta }[];
  readonly deviceChanges: string[];
  /** Tokens by role name: `security-admin`, `security-admin-2`, `operator`, `operator-scoped` (group "servers"), `viewer`. */
  readonly tokens: Record<string, string>;
  call(method: string, url: string, opts?: { token?: string | null; body?: unknown; headers?: Record<string, string>; payload?: string | Buffer }): Promise<ApiAnswer>;
  close(): Promise<void>;
}

export async function startControl(backend: TestBackend, opts: { twoPerson?: boolean; plugins?: FastifyPluginAsync[] } = {}): Promise<TestControl> {
  const store = await backend.open();
  const bus = new EventBus();
  const events: ChokepointEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const applied: { compiled: CompiledPolicy; meta: PolicyMeta }[] = [];
  const deviceChanges: string[] = [];
  const app = await buildControlServer({
    store, bus, twoPerson: opts.twoPerson, plugins: opts.plugins,
    onPolicyApplied: (compiled, meta) => { applied.push({ compiled, meta }); },
    onDeviceChanged: (id) => { deviceChanges.push(id); },
  });
  await app.ready();
  const root = await bootstrapAdmin(store);
  if (root === null) throw new Error('store not fresh');
  const call: TestControl['call'] = async (method, url, o = {}) => {
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    const token = o.token === undefined ? root : o.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const r = await app.inject({
      method: method as 'GET', url, headers,
      ...(o.payload !== undefined ? { payload: o.payload } : o.body !== undefined ? { payload: JSON.stringify(o.body), headers: { 'content-type': 'application/json', ...headers } } : {}),
    });
    let body: unknown = r.body;
    try { body = JSON.parse(r.body); } catch { /* not JSON */ }
    return { status: r.statusCode, body, headers: r.headers };
  };
  const tokens: Record<string, string> = { 'security-admin': root };
  for (const [n, role, scopes] of [['security-admin-2', 'security-admin', null], ['operator', 'operator', null], ['operator-scoped', 'operator', ['servers']], ['viewer', 'viewer', null]] as const) {
    const r = await call('POST', '/api/v1/admins', { body: { name: n, role, scopes } });
    if (r.status !== 201) throw new Error(`cannot create ${n}: ${JSON.stringify(r.body)}`);
    tokens[n] = r.body.token as string;
  }
  return {
    app, store, bus, events, applied, deviceChanges, tokens, call,
    close: async () => { await app.close(); await store.close(); },
  };
}

/** A small valid policy: groups `servers` (127.0.0.0/8) and `laptops` (10.0.0.0/8). */
export function policyText(extraServerHosts: string[] = [], laptopHosts: string[] = ['laptop.example.com']): string {
  return `version: 1
groups:
  - name: servers
    sources: [127.0.0.0/8]
    allow:
      - host: api.example.com
${extraServerHosts.map((h) => `      - host: ${h}\n`).join('')}  - name: laptops
    sources: [10.0.0.0/8]
    allow:
${laptopHosts.map((h) => `      - host: ${h}\n`).join('')}`;
}
