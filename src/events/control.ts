/**
 * Events of the management plane (issue #3): admin audit entries and policy versions.
 * Owned by the control/store work; documented in docs/events.md like every event.
 */
import type { Base } from './catalogue.js';

/** One appended, hash-chained audit entry, republished as an event (after it is stored). */
export interface AuditEntryEvent extends Base {
  readonly type: 'audit.entry';
  readonly seq: number;
  readonly actor: string;
  readonly role: string;
  readonly action: string;
  readonly target: string | null;
  readonly result: 'ok' | 'denied' | 'error';
  readonly source_ip: string | null;
  /** The API token the admin used (null for system actors). */
  readonly token_id: string | null;
  readonly hash: string;
}

export type ControlEvent = AuditEntryEvent;

export const CONTROL_EVENT_TYPES: readonly ControlEvent['type'][] = ['audit.entry'];
