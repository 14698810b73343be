/**
 * Each detector on synthetic streams with a driven clock: it fires when it should, once, and
 * stays quiet on normal traffic (false positives matter as much as misses). Baselines survive
 * a restart through the data directory.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import { BASELINES_FILE, DetectEngine } from '../src/detect/engine.js';
import { withinHours } from '../src/detect/schedule.js';
import type { ChokepointEvent, DecisionEvent } from '../src/events/catalogue.js';
import type { AlertEvent } from '../src/events/evidence.js';
import { validateEvent } from '../src/events/schemas.js';

const WED = Date.UTC(2025, 0, 1, 10, 0); // Wednesday 1 January 2025, 10:00 UTC
const MIN = 60_000;
const HOUR = 3_600_000;
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function setup(detect: Record<string, unknown> = {}, dataDir: string | null = null, start = WED) {
  const c = parseConfig(JSON.stringify({ detect }));
  if (!c.ok) throw new Error(JSON.stringify(c.problems));
  const clock = { t: start, now() { return this.t; } };
  const alerts: AlertEvent[] = [];
  const errors: Error[] = [];
  const engine = new DetectEngine({ config: c.config.detect, publish: (a) => alerts.push(a), dataDir, clock, timers: false, onError: (e) => errors.push(e) });
  const of = (detector: string) => alerts.filter((a) => a.detector === detector);
  return { engine, clock, alerts, errors, of, feed: (e: ChokepointEvent) => engine.observe(e) };
}

/** A detector's alert budget at work: ten alerts, then one summary counting the rest; all valid events. */
function tenAndSummary(all: AlertEvent[], suppressed: number): AlertEvent[] {
  assert.equal(all.length, 11);
  assert.equal(all[10]?.evidence.suppressed, suppressed);
  for (const al of all) assert.deepEqual(validateEvent(al), []);
  return all;
}

function decision(o: Partial<DecisionEvent> = {}): ChokepointEvent {
  return {
    v: 1, type: 'gateway.decision', time: new Date(WED).toISOString(), id: 'd', listener: 'proxy', client_ip: '10.0.0.1', client_port: 1, group: 'servers',
    device_id: 'dev-1', asset_id: null, serial: null, method: 'CONNECT', host: 'api.vendor.example', port: 443, address: '192.0.2.1',
    verdict: 'allow', reason: 'allowed', rule: 'groups.servers.allow[0]', mode: 'enforce', sni: null, tls_version: null, address_class: null, detail: null, status: null, ...o,
  } as ChokepointEvent;
}
const deny = (host: string, o: Partial<DecisionEvent> = {}) => decision({ verdict: 'deny', reason: 'no_rule_matched', rule: null, host, ...o });
function closed(device: string, bytesUp: number, group = 'servers'): ChokepointEvent {
  return {
    v: 1, type: 'gateway.tunnel.closed', time: new Date(WED).toISOString(), id: 'c', listener: 'proxy', client_ip: '10.0.0.1', client_port: 1, group, device_id: device,
    asset_id: null, serial: null, method: 'CONNECT', host: 'backup.vendor.example', port: 443, address: '192.0.2.1', protocol: 'connect', bytes_up: bytesUp, bytes_down: 100, duration_ms: 10, close_reason: 'completed', status: null,
  } as ChokepointEvent;
}

describe('the engine\'s routing', () => {
  it('says which types any detector takes (the evidence thread hands over and parses only those), never alerts, and none once closed', () => {
    const { engine } = setup();
    assert.equal(engine.accepts('gateway.decision'), true);
    assert.equal(engine.accepts('gateway.tunnel.closed'), true);
    assert.equal(engine.accepts('alert'), false, 'a detector never feeds on its own output');
    assert.equal(engine.accepts('sink.recovered'), false);
    engine.close();
    assert.equal(engine.accepts('gateway.decision'), false);
  });
});

describe('destination drift', () => {
  it('reports a denied destination once per device and destination per window, and stays quiet on allowed traffic', () => {
    const s = setup({ defaults: { drift_window: '1h' } });
    for (let i = 0; i < 100; i++) s.feed(decision());
    assert.equal(s.alerts.length, 0, 'allowed traffic raises nothing');
    s.feed(decision({ verdict: 'deny', reason: 'connect_failed', host: 'down.example' }));
    s.feed(decision({ verdict: 'deny', reason: 'bad_request', host: 'x.example' }));
    assert.equal(s.alerts.length, 0, 'upstream and client errors are not drift');
    for (let i = 0; i < 20; i++) s.feed(deny('c2.evil.example'));
    assert.equal(s.of('destination_drift').length, 1, 'deduplicated');
    const a = s.of('destination_drift')[0] as AlertEvent;
    assert.equal(a.device_id, 'dev-1');
    assert.equal(a.group, 'servers');
    assert.equal(a.severity, 'medium');
    assert.equal(a.evidence.destination, 'c2.evil.example:443');
    s.feed(deny('c2.evil.example', { device_id: 'dev-2' }));
    s.feed(deny('other.evil.example'));
    assert.equal(s.of('destination_drift').length, 3, 'another device, another destination');
    s.clock.t += 59 * MIN;
    s.feed(deny('c2.evil.example'));
    assert.equal(s.of('destination_drift').length, 3);
    s.clock.t += 2 * MIN;
    s.feed(deny('c2.evil.example'));
    assert.equal(s.of('destination_drift').length, 4, 'again after the window');
    s.feed(deny('blocked.example', { reason: 'denied_by_rule' }));
    assert.equal(s.of('destination_drift').at(-1)?.severity, 'high', 'an explicit deny rule hit is high');
    for (const al of s.alerts) assert.deepEqual(validateEvent(al), []);
  });

  it('a device scanning many destinations raises at most a few alerts per window, the last one saying so', () => {
    const s = setup({ defaults: { drift_window: '1h' } });
    for (let i = 0; i < 500; i++) s.feed(deny(`h${i}.scan.example`));
    const drift = s.of('destination_drift');
    assert.equal(drift.length, 10);
    assert.ok(typeof drift[9]?.evidence.further_alerts_suppressed_until === 'string');
    assert.equal(drift[0]?.evidence.further_alerts_suppressed_until, undefined);
    s.feed(deny('h0.scan.example', { device_id: 'dev-2' }));
    assert.equal(s.of('destination_drift').length, 11, 'other devices are not silenced');
    s.clock.t += 61 * MIN;
    s.feed(deny('h600.scan.example'));
    // The window's 490 held-back attempts are reported in one summary, then the new budget starts.
    const after = s.of('destination_drift');
    const summary = after.find((a) => typeof a.evidence.suppressed === 'number');
    assert.ok(summary, JSON.stringify(after.slice(-2)));
    assert.equal(summary.evidence.suppressed, 490);
    assert.deepEqual(summary.evidence.sample_destinations, ['h10.scan.example:443', 'h11.scan.example:443', 'h12.scan.example:443', 'h13.scan.example:443', 'h14.scan.example:443']);
    assert.equal(summary.device_id, 'dev-1');
    assert.equal(after.length, 13, 'the summary and a new window\'s first alert');
    for (const al of s.alerts) assert.deepEqual(validateEvent(al), []);
  });

  it('throw-away denied names do not use up the alerts for metadata, raw IPs or deny rules; a held-back window is reported by the next tick', () => {
    const s = setup({ defaults: { drift_window: '1h' } });
    for (let i = 0; i < 10; i++) s.feed(deny(`junk${i}.evil.example`));
    s.feed(deny('c2.evil.example'));
    assert.equal(s.of('destination_drift').length, 10, 'the junk spent the ordinary budget');
    s.feed(deny('169.254.169.254', { reason: 'ip_literal_denied', port: 80 }));
    s.feed(deny('metadata.evil.example', { reason: 'address_denied', address: '169.254.169.254' }));
    const high = s.of('destination_drift').filter((a) => a.severity === 'high');
    assert.deepEqual(high.map((a) => a.evidence.destination), ['169.254.169.254:80', 'metadata.evil.example:443']);
    // Ten throw-away raw literals spend the high budget; the metadata endpoint still alerts.
    for (let i = 0; i < 10; i++) s.feed(deny(`198.51.100.${i}`, { reason: 'ip_literal_denied', address_class: 'documentation' }));
    s.feed(deny('169.254.169.254', { reason: 'ip_literal_denied', port: 443, address_class: 'metadata' }));
    const critical = s.of('destination_drift').filter((a) => a.severity === 'critical');
    assert.deepEqual(critical.map((a) => a.evidence.destination), ['169.254.169.254:443'], 'a metadata endpoint is never held back');
    s.clock.t += 61 * MIN;
    s.engine.tick();
    const summary = s.of('destination_drift').find((a) => a.evidence.suppressed === 1);
    assert.ok(summary, 'the one held back (c2.evil.example) is reported without waiting for more traffic');
    assert.deepEqual(summary.evidence.sample_destinations, ['c2.evil.example:443']);
  });

  it('reports a group\'s first use of an allowed destination only after its learning period', () => {
    const s = setup({ defaults: { drift_learning: '1d' } });
    s.feed(decision({ host: 'a.vendor.example' }));
    s.feed(decision({ host: 'b.vendor.example' }));
    assert.equal(s.of('new_destination').length, 0, 'learning');
    s.clock.t += 25 * HOUR;
    for (let i = 0; i < 10; i++) s.feed(decision({ host: 'a.vendor.example' }));
    assert.equal(s.of('new_destination').length, 0, 'known destinations stay quiet');
    s.feed(decision({ host: 'new.vendor.example', device_id: 'dev-9' }));
    s.feed(decision({ host: 'new.vendor.example' }));
    assert.equal(s.of('new_destination').length, 1);
    assert.equal(s.of('new_destination')[0]?.device_id, 'dev-9');
    s.feed(decision({ host: 'new.vendor.example', group: 'laptops' }));
    assert.equal(s.of('new_destination').length, 1, 'laptops is still learning (first seen now)');
  });
});

describe('new destinations past a full table', () => {
  it('a group whose table was filled (even during learning) still alerts on new destinations, and says the table is full', () => {
    const s = setup({ defaults: { drift_learning: '1d', drift_window: '1h' } });
    // A device fills the group's table with throw-away names during the learning period.
    for (let i = 0; i < 10_000; i++) s.feed(decision({ host: `x${i}.cdn.example` }));
    assert.equal(s.of('new_destination').length, 0, 'learning: nothing to say yet');
    s.feed(decision({ host: 'x10000.cdn.example' }));
    const full = s.of('new_destination');
    assert.equal(full.length, 1, 'the full table is reported at once, learning or not');
    assert.equal(full[0]?.evidence.table_full, true);
    assert.equal(full[0]?.severity, 'medium');
    // After learning, real new destinations are still alerted, once per window each.
    s.clock.t += 25 * HOUR;
    for (const h of ['exfil.example', 'c2.example', 'exfil.example']) s.feed(decision({ host: h }));
    const after = s.of('new_destination').slice(1);
    assert.deepEqual(after.map((a) => a.evidence.destination), ['exfil.example:443', 'c2.example:443']);
    s.clock.t += 2 * HOUR;
    s.feed(decision({ host: 'exfil.example' }));
    assert.equal(s.of('new_destination').length, 4, 'again in a later window');
    // Known destinations stay quiet.
    s.feed(decision({ host: 'x5.cdn.example' }));
    assert.equal(s.of('new_destination').length, 4);
    for (const a of s.alerts) assert.deepEqual(validateEvent(a), []);
  });
});

describe('data volume', () => {
  const cfg = { defaults: { volume_window: '1h', volume_floor_bytes: '1MiB', volume_factor: 5, volume_min_windows: 3 } };

  it('stays quiet on steady or noisy-but-normal volume and fires once on a spike over the baseline', () => {
    const s = setup(cfg);
    const sizes = [10e6, 12e6, 8e6, 11e6, 25e6, 9e6]; // 25 MB is noise (2.5x), not a spike
    for (const n of sizes) {
      s.feed(closed('dev-1', n / 2));
      s.feed(closed('dev-1', n / 2));
      s.clock.t += HOUR;
    }
    assert.equal(s.of('data_volume').length, 0);
    s.feed(closed('dev-1', 40e6));
    assert.equal(s.of('data_volume').length, 0, '40 MB is under 5x the baseline');
    s.feed(closed('dev-1', 80e6));
    assert.equal(s.of('data_volume').length, 1, '120 MB in the window');
    s.feed(closed('dev-1', 80e6));
    assert.equal(s.of('data_volume').length, 1, 'once per window');
    const a = s.of('data_volume')[0] as AlertEvent;
    assert.equal(a.device_id, 'dev-1');
    assert.equal(a.evidence.bytes_up, 120e6);
    assert.ok((a.evidence.baseline_bytes as number) > 8e6 && (a.evidence.baseline_bytes as number) < 20e6);
  });

  it('counts a tunnel that never closes from its progress reports, and does not count them twice at the close', () => {
    const s = setup(cfg);
    for (let w = 0; w < 4; w++) { s.feed(closed('dev-2', 10e6)); s.clock.t += HOUR; }
    const progress = (bytesUp: number): ChokepointEvent => ({ ...closed('dev-2', bytesUp), type: 'gateway.tunnel.progress', id: 'long' } as unknown as ChokepointEvent);
    const { close_reason: _c, status: _s, ...p } = progress(0) as unknown as Record<string, unknown>;
    assert.deepEqual(validateEvent({ ...p, bytes_up: 1 }), [], 'the synthetic report is a valid event');
    s.feed(p as unknown as ChokepointEvent);
    s.feed({ ...p, bytes_up: 30e6 } as unknown as ChokepointEvent);
    assert.equal(s.of('data_volume').length, 0, '30 MB so far: under 5x');
    s.feed({ ...p, bytes_up: 70e6 } as unknown as ChokepointEvent);
    assert.equal(s.of('data_volume').length, 1, '70 MB through a tunnel still open');
    const a = s.of('data_volume')[0] as AlertEvent;
    assert.equal(a.evidence.bytes_up, 70e6, 'running totals are counted once');
    assert.equal(a.evidence.tunnel_open, true);
    // The next window: only what the tunnel sent after its last report counts at its close.
    s.clock.t += HOUR;
    s.feed({ ...closed('dev-2', 71e6), id: 'long' } as ChokepointEvent);
    s.clock.t += HOUR;
    s.feed(closed('dev-2', 1));
    assert.equal(s.of('data_volume').length, 1);
  });

  it('counts each tunnel once with more tunnels reporting progress than the per-device table holds', () => {
    const s = setup(cfg);
    for (let w = 0; w < 4; w++) { s.feed(closed('dev-3', 10e6)); s.clock.t += HOUR; }
    // 150,000 long tunnels open at once (MAX_TRACKED is 100,000), each reporting 100 bytes;
    // then the first one reports again, and closes.
    const { close_reason: _c, status: _s, ...base } = closed('dev-3', 0) as unknown as Record<string, unknown>;
    const report = (id: string, bytesUp: number) => ({ ...base, type: 'gateway.tunnel.progress', id, bytes_up: bytesUp } as unknown as ChokepointEvent);
    for (let i = 0; i < 150_000; i++) s.feed(report(`t${i}`, 100));
    s.feed(report('t0', 200));
    s.feed({ ...closed('dev-3', 300), id: 't0' } as ChokepointEvent);
    s.feed(closed('dev-3', 60e6)); // over the 1 MiB floor and 5x the baseline together with the above
    const a = s.of('data_volume')[0] as AlertEvent;
    assert.equal(a.evidence.bytes_up, 150_000 * 100 + 200 + 60e6, 'the first tunnel counted 300 bytes in all, not its running total again');
  });

  it('the floor keeps a small device quiet; a new device without history never fires', () => {
    const s = setup(cfg);
    for (let w = 0; w < 5; w++) { s.feed(closed('tiny', 1000)); s.clock.t += HOUR; }
    s.feed(closed('tiny', 500_000)); // 500x its baseline but under the 1 MiB floor
    assert.equal(s.of('data_volume').length, 0);
    s.feed(closed('fresh', 5e9));
    assert.equal(s.of('data_volume').length, 0, 'no baseline yet');
    s.feed(closed('tiny', 2_000_000));
    assert.equal(s.of('data_volume').length, 1, 'past the floor and the factor');
  });

  it('per-group thresholds override the defaults', () => {
    const s = setup({ ...cfg, groups: { backup: { volume_factor: 100 } } });
    for (let w = 0; w < 4; w++) { s.feed(closed('b1', 10e6, 'backup')); s.feed(closed('s1', 10e6)); s.clock.t += HOUR; }
    s.feed(closed('b1', 200e6, 'backup'));
    s.feed(closed('s1', 200e6));
    assert.deepEqual(s.of('data_volume').map((a) => a.device_id), ['s1']);
  });
});

describe('surges', () => {
  const tlsFail = (device: string) => deny('api.vendor.example', { reason: 'sni_mismatch', device_id: device });

  it('TLS failures: fires when many distinct devices fail within the window, not for one noisy device or a slow trickle', () => {
    const s = setup({ defaults: { tls_window: '5m', tls_min_devices: 10 } });
    for (let i = 0; i < 200; i++) s.feed(tlsFail('noisy'));
    for (let i = 0; i < 8; i++) s.feed(tlsFail(`d${i}`));
    assert.equal(s.of('tls_failure_surge').length, 0, '9 devices');
    s.clock.t += 6 * MIN;
    for (let i = 0; i < 9; i++) s.feed(tlsFail(`e${i}`));
    assert.equal(s.of('tls_failure_surge').length, 0, 'the earlier ones aged out');
    s.feed(tlsFail('e9'));
    assert.equal(s.of('tls_failure_surge').length, 1);
    const a = s.of('tls_failure_surge')[0] as AlertEvent;
    assert.equal(a.evidence.devices, 10);
    assert.deepEqual(a.evidence.reasons, { sni_mismatch: 10 });
    for (let i = 0; i < 20; i++) s.feed(tlsFail(`f${i}`));
    assert.equal(s.of('tls_failure_surge').length, 1, 'one alert per window');
  });

  it('TLS failures: handshakes that fail on the mTLS listener count, by client address', () => {
    const s = setup({ defaults: { tls_window: '5m', tls_min_devices: 3 } });
    const hs = (ip: string): ChokepointEvent => ({ v: 1, type: 'gateway.tls.handshake_failed', time: new Date(WED).toISOString(), listener: 'mtls', client_ip: ip, client_port: 1, error: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' });
    s.feed(hs('10.0.0.1'));
    s.feed(hs('10.0.0.1'));
    s.feed(tlsFail('dev-7'));
    assert.equal(s.of('tls_failure_surge').length, 0);
    s.feed(hs('10.0.0.2'));
    assert.equal(s.of('tls_failure_surge').length, 1);
    assert.deepEqual(s.of('tls_failure_surge')[0]?.evidence.reasons, { 'handshake:ERR_SSL_TLSV1_ALERT_UNKNOWN_CA': 3, sni_mismatch: 1 });
  });

  it('enrollment: more new devices than expected, and repeated bad tokens', () => {
    const s = setup({ defaults: { enroll_window: '1h', enroll_max_new: 5, enroll_max_bad_tokens: 3 }, groups: { lab: { enroll_max_new: 50 } } });
    const enrolled = (i: number, group = 'servers'): ChokepointEvent => ({ v: 1, type: 'identity.device.enrolled', time: new Date(WED).toISOString(), device_id: `n${group}${i}`, group, asset_id: null, serial: null });
    for (let i = 0; i < 5; i++) s.feed(enrolled(i));
    for (let i = 0; i < 5; i++) s.feed(enrolled(0)); // the same device again is not new
    for (let i = 0; i < 40; i++) s.feed(enrolled(i, 'lab'));
    assert.equal(s.of('enrollment_surge').length, 0);
    s.feed(enrolled(5));
    assert.equal(s.of('enrollment_surge').length, 1);
    assert.equal(s.of('enrollment_surge')[0]?.group, 'servers');
    const refused = { v: 1, type: 'identity.enrollment.refused', time: new Date(WED).toISOString(), code: 'TOKEN_INVALID', token_id: null, device_id: null, serial: null, client_ip: '203.0.113.9' } as unknown as ChokepointEvent;
    s.feed(refused);
    s.feed(refused);
    s.feed({ ...refused, type: 'identity.renewal.refused' } as ChokepointEvent);
    assert.equal(s.of('bad_enrollment_tokens').length, 0, 'renewal refusals are not token guessing');
    s.feed(refused);
    assert.equal(s.of('bad_enrollment_tokens').length, 1);
    assert.deepEqual(s.of('bad_enrollment_tokens')[0]?.evidence.sources, ['203.0.113.9']);
  });

  it('admin actions: weighted towards high privilege, per actor; routine work stays quiet', () => {
    const s = setup({ defaults: { admin_window: '10m', admin_max_weight: 30 } });
    const audit = (actor: string, action: string, result: 'ok' | 'denied' = 'ok', seq = 1): ChokepointEvent => ({ v: 1, type: 'audit.entry', time: new Date(WED).toISOString(), seq, actor, role: 'admin', action, target: null, result, source_ip: '10.9.9.9', token_id: null, hash: 'h' });
    for (let i = 0; i < 30; i++) { s.feed(audit('alice', 'device.list')); s.clock.t += 30_000; }
    assert.equal(s.of('admin_surge').length, 0, 'thirty reads spread over 15 minutes');
    for (let i = 0; i < 6; i++) s.feed(audit('mallory', 'token.create'));
    assert.equal(s.of('admin_surge').length, 0, 'weight 30 is the limit');
    s.feed(audit('bob', 'admin.create'));
    s.feed(audit('mallory', 'policy.apply', 'denied', 77));
    assert.equal(s.of('admin_surge').length, 1);
    const a = s.of('admin_surge')[0] as AlertEvent;
    assert.equal(a.evidence.actor, 'mallory');
    assert.equal(a.evidence.weight, 37);
    assert.equal(a.evidence.last_audit_seq, 77);
  });
});

describe('schedule', () => {
  const hours = { from: '08:00', to: '18:00', days: ['mon', 'tue', 'wed', 'thu', 'fri'] as ('mon' | 'tue' | 'wed' | 'thu' | 'fri')[] };

  it('withinHours handles days, the end boundary, offsets and overnight shifts', () => {
    assert.equal(withinHours(WED, { ...hours, utc_offset_minutes: 0 }), true);
    assert.equal(withinHours(WED + 8 * HOUR, { ...hours, utc_offset_minutes: 0 }), false, '18:00 is outside');
    assert.equal(withinHours(WED + 8 * HOUR, { ...hours, utc_offset_minutes: -120 }), true, '16:00 local');
    assert.equal(withinHours(WED + 3 * 24 * HOUR, { ...hours, utc_offset_minutes: 0 }), false, 'Saturday');
    const night = { from: '22:00', to: '06:00', days: ['fri' as const], utc_offset_minutes: 0 };
    assert.equal(withinHours(Date.UTC(2025, 0, 3, 23), night), true, 'Friday 23:00');
    assert.equal(withinHours(Date.UTC(2025, 0, 4, 3), night), true, 'Saturday 03:00 belongs to Friday night');
    assert.equal(withinHours(Date.UTC(2025, 0, 5, 3), night), false, 'Sunday 03:00');
  });

  it('off hours: quiet in hours and for groups without hours; reports a connection after hours once per device per window', () => {
    const s = setup({ groups: { servers: { hours } } });
    for (let i = 0; i < 50; i++) s.feed(decision());
    s.clock.t = WED + 11 * HOUR; // 21:00
    s.feed(decision({ group: 'laptops' }));
    s.feed(deny('x.example'));
    assert.equal(s.of('off_hours').length, 0, 'no hours for laptops; denies are drift, not off-hours');
    s.feed(decision());
    s.feed(decision());
    assert.equal(s.of('off_hours').length, 1);
    assert.equal(s.of('off_hours')[0]?.device_id, 'dev-1');
  });

  it('off hours: many devices of a group at once give ten alerts and one summary, not one each', () => {
    const s = setup({ groups: { servers: { hours } } });
    s.clock.t = WED + 11 * HOUR; // 21:00
    for (let i = 0; i < 500; i++) s.feed(decision({ device_id: `dev-${i}` }));
    assert.equal(s.of('off_hours').length, 10);
    s.clock.t += 2 * HOUR;
    s.engine.tick();
    const all = tenAndSummary(s.of('off_hours'), 490);
    assert.deepEqual(all[10]?.evidence.sample_devices, ['dev-10', 'dev-11', 'dev-12', 'dev-13', 'dev-14']);
  });

  it('offline: a device silent past its expected interval is reported once, and its return is noted', () => {
    const s = setup({ defaults: { offline_after: '24h' }, groups: { lab: { offline_after: 0 } } });
    s.feed(decision());
    s.feed(decision({ device_id: 'lab-1', group: 'lab' }));
    s.feed(deny('x.example', { device_id: null, client_ip: '198.51.100.7', group: null }));
    s.clock.t += 23 * HOUR;
    s.engine.tick();
    assert.equal(s.of('device_offline').length, 0);
    s.clock.t += 2 * HOUR;
    s.engine.tick();
    s.engine.tick();
    assert.deepEqual(s.of('device_offline').map((a) => [a.device_id, a.severity]), [['dev-1', 'medium']], 'lab has no expectation; unauthenticated clients are not devices');
    s.feed(decision());
    assert.deepEqual(s.of('device_offline').map((a) => a.severity), ['medium', 'low']);
  });
});

describe('baselines', () => {
  it('volume: a flood of new devices does not push out the baseline of a device that stays active', () => {
    const s = setup({ defaults: { volume_window: '1h', volume_floor_bytes: '1MiB', volume_min_windows: 2 } });
    for (let w = 0; w < 4; w++) { s.feed(closed('victim', 10e6)); s.clock.t += HOUR; }
    // 100,001 other devices (the table holds 100,000), the victim active meanwhile.
    for (let i = 0; i <= 100_000; i++) {
      s.feed(closed(`flood-${i}`, 1));
      if (i % 1000 === 0) s.feed(closed('victim', 1));
    }
    s.feed(closed('victim', 5e9));
    assert.deepEqual(s.of('data_volume').map((a) => a.device_id), ['victim'], 'its baseline was kept, so the upload alerts');
  });

  it('a flood of new client addresses cannot evict a quiet enrolled device (volume and offline alike)', () => {
    const s = setup({ defaults: { volume_window: '1h', volume_floor_bytes: '1MiB', volume_min_windows: 2, offline_after: '24h' } });
    for (let w = 0; w < 4; w++) { s.feed(closed('quiet-dev', 10e6)); s.clock.t += HOUR; }
    s.feed(decision({ device_id: 'quiet-dev' }));
    // 100,001 plain-listener clients, each a new address (one IPv6 /64 is enough), while the
    // enrolled device stays silent.
    for (let i = 0; i <= 100_000; i++) {
      const ip = `2001:db8::${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}`;
      const e = { ...closed('x', 1), device_id: null, client_ip: ip } as ChokepointEvent;
      s.feed(e);
      s.feed({ ...decision({ device_id: null, client_ip: ip }) } as ChokepointEvent);
    }
    s.feed(closed('quiet-dev', 5e9));
    assert.deepEqual(s.of('data_volume').map((a) => a.device_id), ['quiet-dev'], 'its volume baseline was kept');
    s.clock.t += 25 * HOUR;
    s.engine.tick();
    assert.ok(s.of('device_offline').some((a) => a.device_id === 'quiet-dev'), 'and its last check-in');
  });

  it('offline: many devices silent at once give ten alerts and one summary, not one each', () => {
    const s = setup({ defaults: { offline_after: '24h', drift_window: '1h' } });
    for (let i = 0; i < 300; i++) s.feed(decision({ device_id: `dev-${i}` }));
    s.clock.t += 25 * HOUR;
    s.engine.tick();
    assert.equal(s.of('device_offline').length, 10);
    s.clock.t += 2 * HOUR;
    s.engine.tick();
    const all = tenAndSummary(s.of('device_offline'), 290);
    assert.equal((all[10]?.evidence.sample_devices as string[]).length, 5);
  });

  it('offline after a restart: the gateway\'s own downtime does not count as every device\'s silence', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-detect-'));
    dirs.push(dataDir);
    const cfg = { defaults: { offline_after: '24h' } };
    const a = setup(cfg, dataDir);
    a.feed(decision({ device_id: 'dev-1' }));
    a.feed(decision({ device_id: 'dev-2' }));
    a.engine.persist();
    // Two days down, then back: no alert at the first tick…
    const b = setup(cfg, dataDir, a.clock.t + 48 * HOUR);
    b.engine.tick();
    assert.equal(b.of('device_offline').length, 0, 'no storm at start');
    // …dev-1 checks in; dev-2 stays silent for a whole interval after the restart.
    b.feed(decision({ device_id: 'dev-1' }));
    b.clock.t += 25 * HOUR;
    b.feed(decision({ device_id: 'dev-1' }));
    b.engine.tick();
    assert.deepEqual(b.of('device_offline').map((x) => x.device_id), ['dev-2']);
  });

  it('persist to the data directory and reload at start: a restart does not reset learning', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-detect-'));
    dirs.push(dataDir);
    const cfg = { defaults: { volume_window: '1h', volume_floor_bytes: '1MiB', drift_learning: '1h' } };
    const a = setup(cfg, dataDir);
    for (let w = 0; w < 4; w++) { a.feed(closed('dev-1', 10e6)); a.clock.t += HOUR; }
    a.feed(decision({ host: 'known.example' }));
    a.engine.close();
    assert.ok(existsSync(join(dataDir, BASELINES_FILE)));
    const b = setup(cfg, dataDir, a.clock.t + 2 * HOUR);
    b.feed(decision({ host: 'known.example' }));
    assert.equal(b.of('new_destination').length, 0, 'known destinations are remembered');
    b.feed(decision({ host: 'unknown.example' }));
    assert.equal(b.of('new_destination').length, 1, 'the learning period is remembered');
    b.feed(closed('dev-1', 200e6));
    assert.equal(b.of('data_volume').length, 1, 'the volume baseline is remembered');
    assert.deepEqual(b.errors, []);
  });

  it('a volume window in progress survives a restart: an upload split around it is seen whole, and alerted once', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-detect-'));
    dirs.push(dataDir);
    const cfg = { defaults: { volume_window: '1h', volume_floor_bytes: '1MiB', volume_factor: 5, volume_min_windows: 3 } };
    const a = setup(cfg, dataDir);
    for (let w = 0; w < 4; w++) { a.feed(closed('dev-1', 10e6)); a.clock.t += HOUR; }
    a.feed(closed('dev-1', 30e6)); // under 5x the 10 MB baseline
    a.engine.close();
    assert.equal(a.of('data_volume').length, 0);
    // Back ten minutes later, in the same window: 30 MB more makes 60 MB in it.
    const b = setup(cfg, dataDir, a.clock.t + 10 * MIN);
    b.feed(closed('dev-1', 30e6));
    const [alert] = b.of('data_volume');
    assert.equal(alert?.evidence.bytes_up, 60e6);
    assert.equal(alert?.group, 'servers');
    b.engine.close();
    // Again, still in the window: the alert it raised is not raised again.
    const c = setup(cfg, dataDir, b.clock.t + 10 * MIN);
    c.feed(closed('dev-1', 30e6));
    assert.equal(c.of('data_volume').length, 0, 'once per window, across restarts');
    c.engine.close();
    // Back after the window ended: a fresh window starts at the restart.
    const d = setup(cfg, dataDir, c.clock.t + 3 * HOUR);
    d.feed(closed('dev-1', 30e6));
    assert.equal(d.of('data_volume').length, 0, 'a new window starts at the restart');
    assert.deepEqual([...a.errors, ...b.errors, ...c.errors, ...d.errors], []);
  });

  it('an unreadable baselines file is set aside and the detectors start fresh', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'cp-detect-'));
    dirs.push(dataDir);
    writeFileSync(join(dataDir, BASELINES_FILE), '{not json');
    const s = setup({}, dataDir);
    assert.equal(s.errors.length, 1);
    assert.match(s.errors[0]?.message as string, /starting fresh/);
    assert.ok(existsSync(join(dataDir, `${BASELINES_FILE}.corrupt`)));
    s.feed(deny('x.example'));
    assert.equal(s.alerts.length, 1);
  });
});
