/**
 * @peculiar/x509 needs the Reflect metadata polyfill loaded before it (its ASN.1 schema uses
 * decorators). Every identity module imports the library through this file so the order holds.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
