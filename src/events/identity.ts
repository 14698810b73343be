/**
 * Events of device identity (issue #4): tokens, enrollment, approval, issuance, renewal,
 * revocation. Owned by the identity work; documented in docs/events.md like every event.
 */
import type { Base } from './catalogue.js';

export interface IdentityLifecycleEvent extends Base {
  readonly type: 'identity.device.enrolled';
  readonly device_id: string;
  readonly group: string;
  readonly asset_id: string | null;
  readonly serial: string | null;
}

export type IdentityEvent = IdentityLifecycleEvent;

export const IDENTITY_EVENT_TYPES: readonly IdentityEvent['type'][] = ['identity.device.enrolled'];
