/**
 * /metrics: values fed from events, bounded and sanitized labels, the fastify route with its
 * declared role, and the exposition checked by a real `promtool check metrics`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import Fastify from 'fastify';
import type { ChokepointEvent, DecisionEvent } from '../src/events/catalogue.js';
import { METRICS } from '../src/metrics/names.js';
import { metricsPlugin } from '../src/metrics/plugin.js';
import { EvidenceMetrics, LabelCap } from '../src/metrics/registry.js';

const T = '2025-03-01T12:00:00.000Z';
function decision(over: Partial<DecisionEvent>): ChokepointEvent {
  return {
    v: 1, type: 'gateway.decision', time: T, id: 'x', listener: 'proxy', client_ip: '10.0.0.1', client_port: 1, group: 'servers',
    device_id: null, asset_id: null, serial: null, method: 'CONNECT', host: 'api.vendor.example', port: 443, address: null,
    verdict: 'allow', reason: 'allowed', rule: null, mode: 'enforce', sni: null, tls_version: null, address_class: null, detail: null, status: null, ...over,
  } as ChokepointEvent;
}
function closed(group: string, up: number, down: number): ChokepointEvent {
  return {
    v: 1, type: 'gateway.tunnel.closed', time: T, id: 'x', listener: 'proxy', client_ip: '10.0.0.1', client_port: 1, group, device_id: null, asset_id: null, serial: null,
    method: 'CONNECT', host: 'a.example', port: 443, address: '192.0.2.1', protocol: 'connect', bytes_up: up, bytes_down: down, duration_ms: 5, close_reason: 'completed', status: null,
  } as ChokepointEvent;
}

function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.split(' ').at(-1));
  }
  return undefined;
}

const promtool = spawnSync('promtool', ['--version']).status === 0;

describe('metrics', () => {
  it('counts decisions, tunnels, bytes, TLS failures, drops, alerts and policy from events', async () => {
    const stats = { pending_events: 7, pending_bytes: 700, dropped: 0, delivered: 1, up: false };
    const m = new EvidenceMetrics({ host_labels: false, max_label_values: 100, process: true }, () => [{ name: 'siem', stats: () => stats }]);
    m.observe(decision({}));
    m.observe(decision({}));
    m.observe(decision({ verdict: 'deny', reason: 'sni_mismatch' }));
    m.observe(closed('servers', 100, 2000));
    m.observe({ v: 1, type: 'gateway.policy.loaded', time: T, source: 'p.yaml', digest: 'abcdef0123456789ffff', groups: 2, warnings: [] });
    m.observe({ v: 1, type: 'sink.dropped', time: T, sink: 'siem', dropped: 5, reason: 'buffer_full' });
    m.observe({ v: 1, type: 'alert', time: T, id: 'a', detector: 'data_volume', severity: 'high', device_id: null, group: null, summary: '', evidence: {}, suggested_action: '' });
    m.setCertificateExpiry('ca', new Date(Date.now() + 3600_000));
    m.setPolicyVersion(12);
    m.observeResolverLatency(0.02, 'ok');
    const { body, contentType } = await m.exposition();
    assert.match(contentType, /^text\/plain/);
    assert.equal(sample(body, METRICS.decisions.name, { verdict: 'allow', reason: 'allowed', group: 'servers' }), 2);
    assert.equal(sample(body, METRICS.decisions.name, { verdict: 'deny', reason: 'sni_mismatch' }), 1);
    assert.equal(sample(body, METRICS.tlsFailures.name, { reason: 'sni_mismatch' }), 1);
    assert.equal(sample(body, METRICS.tunnelsActive.name), 1, 'two opened, one closed');
    assert.equal(sample(body, METRICS.tunnelBytes.name, { direction: 'up' }), 100);
    assert.equal(sample(body, METRICS.tunnelBytes.name, { direction: 'down' }), 2000);
    assert.equal(sample(body, METRICS.sinkDropped.name, { sink: 'siem', reason: 'buffer_full' }), 5);
    assert.equal(sample(body, METRICS.sinkBacklogEvents.name, { sink: 'siem' }), 7);
    assert.equal(sample(body, METRICS.sinkUp.name, { sink: 'siem' }), 0);
    assert.equal(sample(body, METRICS.alerts.name, { detector: 'data_volume', severity: 'high' }), 1);
    assert.equal(sample(body, METRICS.policyInfo.name, { digest: 'abcdef0123456789' }), 1);
    assert.equal(sample(body, METRICS.policyVersion.name), 12);
    // Many reloads later the info series still names the policy in force (the label cap is 100).
    for (let i = 0; i < 150; i++) m.observe({ v: 1, type: 'gateway.policy.loaded', time: T, source: 'p.yaml', digest: `${String(i).padStart(16, '0')}ffff`, groups: 2, warnings: [] });
    const later = (await m.exposition()).body;
    assert.equal(sample(later, METRICS.policyInfo.name, { digest: '0000000000000149' }), 1);
    assert.equal(later.split('\n').filter((l) => l.startsWith(`${METRICS.policyInfo.name}{`)).length, 1, 'one series: the current policy');
    const exp = sample(body, METRICS.certExpiry.name, { kind: 'ca' }) as number;
    assert.ok(exp > 3500 && exp <= 3600, String(exp));
    assert.equal(sample(body, `${METRICS.resolverLatency.name}_count`, { result: 'ok' }), 1);
    assert.ok(sample(body, 'chokepoint_process_resident_memory_bytes') !== undefined || sample(body, 'chokepoint_nodejs_heap_size_total_bytes') !== undefined, 'process metrics');
    assert.ok(!body.includes('api.vendor.example'), 'no host labels unless configured');
    m.setActiveTunnelsSource(() => 42);
    assert.equal(sample((await m.exposition()).body, METRICS.tunnelsActive.name), 42);
  });

  it('caps distinct label values (other bucket) and sanitizes them: attacker-chosen names cannot explode the series', async () => {
    const cap = new LabelCap(3);
    assert.deepEqual(['a', 'b', 'c', 'd', 'a'].map((v) => cap.value('g', v)), ['a', 'b', 'c', 'other', 'a']);
    assert.equal(cap.value('x', 'bad"\n}label'), 'bad___label');
    assert.equal(cap.value('x', null), 'none');
    const m = new EvidenceMetrics({ host_labels: true, max_label_values: 5, process: false });
    for (let i = 0; i < 1000; i++) m.observe(decision({ verdict: 'deny', reason: 'no_rule_matched', host: `h${i}.evil.example` }));
    const { body } = await m.exposition();
    const series = body.split('\n').filter((l) => l.startsWith(`${METRICS.decisions.name}{`));
    assert.equal(series.length, 6, 'five hosts and other');
    assert.equal(sample(body, METRICS.decisions.name, { host: 'other' }), 995);
  });

  it('counts across scrapes without loss or double counting; a series first seen at zero is exposed', async () => {
    const m = new EvidenceMetrics({ host_labels: false, max_label_values: 10, process: false });
    for (let i = 0; i < 3; i++) m.observe(decision({}));
    m.observe(closed('servers', 0, 0));
    const first = (await m.exposition()).body;
    assert.equal(sample(first, METRICS.decisions.name, { verdict: 'allow' }), 3);
    assert.equal(sample(first, METRICS.tunnelBytes.name, { direction: 'up', group: 'servers' }), 0, 'a tunnel that moved no bytes still has its series');
    assert.equal(sample(await m.exposition().then((x) => x.body), METRICS.decisions.name, { verdict: 'allow' }), 3, 'a scrape with nothing new changes nothing');
    for (let i = 0; i < 2; i++) m.observe(decision({}));
    m.observe(closed('servers', 10, 20));
    const second = (await m.exposition()).body;
    assert.equal(sample(second, METRICS.decisions.name, { verdict: 'allow' }), 5);
    assert.equal(sample(second, METRICS.tunnelBytes.name, { direction: 'down', group: 'servers' }), 20);
  });

  it('spellings that sanitize to one value are one series, and count once against the cap', () => {
    const cap = new LabelCap(2);
    assert.deepEqual(['a!b', 'a?b', 'a#b', 'c', 'd', 'a!b'].map((v) => cap.value('g', v)), ['a_b', 'a_b', 'a_b', 'c', 'other', 'a_b']);
    // A real value spelled like the overflow or null bucket stays apart from them.
    const c2 = new LabelCap(5);
    assert.deepEqual(['other', 'none', null].map((v) => c2.value('group', v)), ['other_', 'none_', 'none']);
  });

  it('passes promtool check metrics', { skip: promtool ? false : 'promtool not installed (.ci/run installs prometheus)' }, async () => {
    const m = new EvidenceMetrics({ host_labels: true, max_label_values: 100, process: true }, () => [{ name: 'siem', stats: () => ({ pending_events: 1, pending_bytes: 2, dropped: 0, delivered: 0, up: true }) }]);
    m.observe(decision({}));
    m.observe(decision({ verdict: 'deny', reason: 'tls_version', group: null, host: 'x"y' }));
    m.observe(closed('servers', 1, 2));
    m.observe({ v: 1, type: 'sink.dropped', time: T, sink: 'siem', dropped: 1, reason: 'queue_full' });
    m.setCertificateExpiry('device_min', new Date(Date.now() - 1000));
    m.observeResolverLatency(0.2, 'error');
    const { body } = await m.exposition();
    const out = execFileSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    assert.equal(out.trim(), '', `promtool lint: ${out}`);
  });

  it('promtool really rejects a broken exposition (the check can fail)', { skip: promtool ? false : 'promtool not installed' }, () => {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: '# TYPE x_total counter\nx_total{a="1"} 1\nx_total{a="1"} 2\nnot a metric line\n', encoding: 'utf8' });
    assert.notEqual(r.status, 0);
  });

  it('serves GET /metrics through the fastify plugin and declares its role', async () => {
    const m = new EvidenceMetrics({ host_labels: false, max_label_values: 10, process: false });
    m.observe(decision({}));
    for (const access of ['viewer', 'public'] as const) {
      const app = Fastify();
      const roles: unknown[] = [];
      app.addHook('onRoute', (r) => { if (r.url === '/metrics' && r.method === 'GET') roles.push((r.config as { role?: unknown } | undefined)?.role); });
      await app.register(metricsPlugin, { metrics: m, access });
      const res = await app.inject({ method: 'GET', url: '/metrics' });
      assert.equal(res.statusCode, 200);
      assert.match(res.headers['content-type'] as string, /^text\/plain; version=0\.0\.4/);
      assert.equal(sample(res.body, METRICS.decisions.name, { verdict: 'allow' }), 1);
      assert.deepEqual(roles, [access]);
      await app.close();
    }
  });
});
