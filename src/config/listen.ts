import { isIP } from 'node:net';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Parses `HOST:PORT`, `[V6]:PORT` or `:PORT` (all interfaces); returns an error message on failure. */
export function parseListen(v: string): ListenAddress | string {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(v);
  if (!m) return `"${v}" is not HOST:PORT`;
  const port = Number(m[3]);
  if (port > 65535) return `port ${port} is out of range`;
  const host = m[1] ?? (m[2] === '' ? '0.0.0.0' : (m[2] as string));
  if (m[1] !== undefined && isIP(host) !== 6) return `"${host}" is not an IPv6 address`;
  if (host !== 'localhost' && isIP(host) === 0) return `"${host}" is not an IP address (or localhost)`;
  return { host, port };
}
