/**
 * The identity storage interfaces (src/identity/ports.ts) on the store's kysely database, SQLite
 * or PostgreSQL. Token consumption is one conditional UPDATE … RETURNING inside the transaction
 * that creates the device: two enrollments racing for a token's last use cannot both win.
 */
import type { Selectable } from 'kysely';
import type {
  CaRow, CertificateRow, ConsumeInput, DeviceRow, EnrollmentRequestRow, IdentityStore, TokenRow,
} from '../identity/ports.js';
import type { Exec, Store } from './open.js';
import type { CertificatesTable, DevicesTable, EnrollmentRequestsTable, EnrollmentTokensTable } from './schema.js';

const n = (v: unknown): number => Number(v);
const nn = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

const device = (r: Selectable<DevicesTable>): DeviceRow => ({
  id: r.id, group_name: r.group_name, asset_id: r.asset_id, tags: JSON.parse(r.tags) as string[], state: r.state,
  created_at: n(r.created_at), updated_at: n(r.updated_at), last_seen_at: nn(r.last_seen_at),
});
const cert = (r: Selectable<CertificatesTable>): CertificateRow => ({
  ...r, not_before: n(r.not_before), not_after: n(r.not_after), issued_at: n(r.issued_at), first_used_at: nn(r.first_used_at), revoked_at: nn(r.revoked_at),
});
const token = (r: Selectable<EnrollmentTokensTable>): TokenRow => ({
  ...r, uses_total: n(r.uses_total), uses_left: n(r.uses_left), expires_at: n(r.expires_at), revoked_at: nn(r.revoked_at), created_at: n(r.created_at),
});
const request = (r: Selectable<EnrollmentRequestsTable>): EnrollmentRequestRow => ({ ...r, decided_at: nn(r.decided_at), created_at: n(r.created_at) });

const deviceValues = (d: DeviceRow) => ({ ...d, tags: JSON.stringify(d.tags) });

export function identityStore(store: Store): IdentityStore {
  const db = store.db;
  return {
    async findTokenByHash(hash) {
      const r = await db.selectFrom('enrollment_tokens').selectAll().where('token_hash', '=', hash).executeTakeFirst();
      return r ? token(r) : null;
    },
    async consumeToken(input: ConsumeInput) {
      return store.tx(async (trx) => {
        const r = await trx.updateTable('enrollment_tokens')
          .set((eb) => ({ uses_left: eb('uses_left', '-', 1) }))
          .where('token_hash', '=', input.tokenHash)
          .where('uses_left', '>', 0)
          .where('expires_at', '>', input.now)
          .where('revoked_at', 'is', null)
          .returningAll()
          .executeTakeFirst();
        if (!r) return null;
        await trx.insertInto('devices').values(deviceValues(input.device)).execute();
        await trx.insertInto('enrollment_requests').values({ ...input.request }).execute();
        return token(r);
      });
    },
    async findRequestsByToken(tokenId) {
      return (await db.selectFrom('enrollment_requests').selectAll().where('token_id', '=', tokenId).orderBy('created_at').execute()).map(request);
    },
    async completeEnrollment(input) {
      await store.tx(async (trx) => {
        await trx.updateTable('enrollment_requests').set({ state: 'issued' }).where('id', '=', input.requestId).where('state', 'in', ['pending', 'approved']).execute();
        await trx.updateTable('devices').set({ state: 'active', updated_at: input.now }).where('id', '=', input.deviceId).where('state', '=', 'pending').execute();
        await insertCert(trx, input.cert);
      });
    },
    insertCertificate: (c) => insertCert(db, c),
    async getDevice(id) {
      const r = await db.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirst();
      return r ? device(r) : null;
    },
    async getCertificate(serial) {
      const r = await db.selectFrom('certificates').selectAll().where('serial', '=', serial).executeTakeFirst();
      return r ? cert(r) : null;
    },
    async listDevices() {
      return (await db.selectFrom('devices').selectAll().execute()).map(device);
    },
    async listCertificates() {
      return (await db.selectFrom('certificates').selectAll().execute()).map(cert);
    },
    async certificatesOf(deviceId) {
      return (await db.selectFrom('certificates').selectAll().where('device_id', '=', deviceId).execute()).map(cert);
    },
    async certificatesBySpki(spki) {
      return (await db.selectFrom('certificates').selectAll().where('spki_sha256', '=', spki).execute()).map(cert);
    },
    async markFirstUse({ serial, deviceId, now }) {
      return store.tx(async (trx) => {
        const u = await trx.updateTable('certificates').set({ first_used_at: now }).where('serial', '=', serial).where('first_used_at', 'is', null).executeTakeFirst();
        if (Number(u.numUpdatedRows) !== 1) return [];
        const me = await trx.selectFrom('certificates').select('issued_at').where('serial', '=', serial).executeTakeFirstOrThrow();
        const older = await trx.selectFrom('certificates').select('serial')
          .where('device_id', '=', deviceId).where('serial', '!=', serial).where('revoked_at', 'is', null).where('issued_at', '<=', n(me.issued_at)).execute();
        if (older.length === 0) return [];
        const serials = older.map((o) => o.serial);
        await trx.updateTable('certificates').set({ revoked_at: now, revocation_reason: 'superseded' }).where('serial', 'in', serials).where('revoked_at', 'is', null).execute();
        return serials;
      });
    },
    async touchDevice(id, now) {
      await db.updateTable('devices').set({ last_seen_at: now }).where('id', '=', id).execute();
    },
    async listCas() {
      return (await db.selectFrom('cas').selectAll().execute()).map((r): CaRow => ({ ...r, not_after: n(r.not_after), created_at: n(r.created_at) }));
    },
    async upsertCa(row) {
      await store.tx(async (trx) => {
        const u = await trx.updateTable('cas').set({ cert_pem: row.cert_pem, state: row.state, not_after: row.not_after }).where('id', '=', row.id).executeTakeFirst();
        if (Number(u.numUpdatedRows) === 0) await trx.insertInto('cas').values({ ...row }).execute();
      });
    },
  };
}

async function insertCert(db: Exec, c: CertificateRow): Promise<void> {
  await db.insertInto('certificates').values({ ...c }).execute();
}
