/**
 * createIdentity(): the one entry point `chokepoint serve` uses for device identity. It opens the
 * CA set, loads the device directory from the store, and returns what the other parts need:
 *   directory                    → the gateway's mTLS listener (DeviceDirectory)
 *   estPlugin                    → the control server's `plugins` (EST + /crl)
 *   deviceChanged(id)            → the control server's `onDeviceChanged`
 *   issueServerCertificate(...)  → TLS certificates for the control and mTLS listeners
 */
import type { FastifyPluginAsync } from 'fastify';
import { createIdentityService, type IdentityService, type IdentityServiceOptions } from '../identity/service.js';
import type { IdentityStore } from '../identity/ports.js';
import type { Store } from '../store/open.js';
import { identityStore } from '../store/identity-repo.js';
import { estPlugin } from './est.js';

export interface Identity extends IdentityService {
  readonly estPlugin: FastifyPluginAsync;
}

export async function createIdentity(opts: Omit<IdentityServiceOptions, 'store'> & { store: Store | IdentityStore }): Promise<Identity> {
  const store = 'db' in opts.store ? identityStore(opts.store) : opts.store;
  const service = await createIdentityService({ ...opts, store });
  return { ...service, estPlugin: estPlugin(service) };
}
