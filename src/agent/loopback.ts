/** Loopback checks for the agent's local listeners (the forwarder, the namespace relay). */
import { isIPv4, isIPv6 } from 'node:net';

/** 127.0.0.0/8, ::1, and IPv4-mapped loopback (`::ffff:127.0.0.1`, how a dual-stack socket reports it). */
export function isLoopbackAddress(addr: string | undefined): boolean {
  if (addr === undefined) return false;
  let a = addr;
  if (a.toLowerCase().startsWith('::ffff:') && isIPv4(a.slice(7))) a = a.slice(7);
  if (isIPv4(a)) return a.startsWith('127.');
  // The WHATWG URL parser compresses IPv6 (RFC 5952), so every spelling of ::1 becomes "[::1]".
  if (isIPv6(a)) { try { return new URL(`http://[${a}]/`).hostname === '[::1]'; } catch { return false; } }
  return false;
}

export interface HostPort { readonly host: string; readonly port: number }

/** `127.0.0.1:3128`, `[::1]:3128`; the host must be a loopback literal. */
export function parseLoopbackListen(text: string): HostPort | null {
  const m = /^\[([^\]]+)\]:([0-9]{1,5})$/.exec(text) ?? /^([^:]+):([0-9]{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[2]);
  if (port > 65535) return null;
  return { host: m[1] as string, port };
}
