/**
 * Node's libuv TCP bindings, typed: the layer `net.Socket` is built on. raw-socket.ts uses them
 * to carry proxy connections without the stream machinery (see there for the measurement).
 *
 * `process.binding` is a documentation-only deprecation (DEP0111); these are the bindings Node's
 * own `net` module uses, stable across Node 20's releases. Their shape is checked once, at
 * load, so that a Node that changed them fails the gateway at start-up with a clear message
 * rather than at the first connection.
 */
import { getSystemErrorName } from 'node:util';

export interface PeerName { address?: string; port?: number; family?: string }

export interface UvReq { oncomplete: ((status: number) => void) | null; handle?: unknown }

export interface TcpHandle {
  /** Called with `this` the handle; the read's length or error is in streamBaseState. Returns the next user buffer, if any. */
  onread: ((ab: ArrayBuffer | undefined) => Buffer | undefined) | null;
  onconnection: ((status: number, client: TcpHandle | undefined) => void) | null;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: UvReq, buf: Uint8Array): number;
  shutdown(req: UvReq): number;
  close(cb?: () => void): void;
  getpeername(out: PeerName): number;
  getsockname(out: PeerName): number;
  setNoDelay(on: boolean): number;
  useUserBuffer(buf: Uint8Array): void;
  bind(host: string, port: number): number;
  bind6(host: string, port: number, flags: number): number;
  listen(backlog: number): number;
  connect(req: UvReq, host: string, port: number): number;
  connect6(req: UvReq, host: string, port: number): number;
  readonly fd: number;
}

interface TcpBinding {
  TCP: new (type: number) => TcpHandle;
  TCPConnectWrap: new () => UvReq & { address?: string; port?: number };
  constants: { SOCKET: number; SERVER: number };
}

interface StreamBinding {
  WriteWrap: new () => UvReq;
  ShutdownWrap: new () => UvReq;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}

type Binding = (name: string) => unknown;
const binding = (process as unknown as { binding: Binding }).binding;

function load(): { tcp: TcpBinding; stream: StreamBinding; eof: number } {
  const tcp = binding('tcp_wrap') as TcpBinding;
  const stream = binding('stream_wrap') as StreamBinding;
  const uv = binding('uv') as { UV_EOF?: number };
  const proto = tcp.TCP?.prototype as Partial<TcpHandle> | undefined;
  const methods = ['readStart', 'readStop', 'writeBuffer', 'shutdown', 'close', 'getpeername', 'getsockname', 'setNoDelay', 'useUserBuffer', 'bind', 'bind6', 'listen', 'connect', 'connect6'] as const;
  const missing = methods.filter((m) => typeof proto?.[m] !== 'function');
  if (typeof stream.WriteWrap !== 'function' || typeof stream.ShutdownWrap !== 'function' || !(stream.streamBaseState instanceof Int32Array)
    || typeof tcp.TCPConnectWrap !== 'function' || typeof uv.UV_EOF !== 'number' || missing.length > 0) {
    throw new Error(`this Node (${process.version}) does not offer the TCP bindings the proxy listener uses${missing.length > 0 ? ` (missing: ${missing.join(', ')})` : ''}; run Chokepoint on Node 20`);
  }
  return { tcp, stream, eof: uv.UV_EOF };
}

const b = load();
export const TCP = b.tcp.TCP;
export const TCPConnectWrap = b.tcp.TCPConnectWrap;
export const TCP_SOCKET = b.tcp.constants.SOCKET;
export const TCP_SERVER = b.tcp.constants.SERVER;
export const WriteWrap = b.stream.WriteWrap;
export const ShutdownWrap = b.stream.ShutdownWrap;
export const streamState = b.stream.streamBaseState;
export const kReadBytesOrError = b.stream.kReadBytesOrError;
export const kLastWriteWasAsync = b.stream.kLastWriteWasAsync;
export const UV_EOF = b.eof;

/**
 * A libuv error number as Node reports it: an Error with `code` (`ECONNRESET`), `errno` and
 * `syscall`; `target` (host:port) ends the message.
 */
export function uvError(errno: number, syscall: string, target?: string): NodeJS.ErrnoException {
  let code: string;
  try { code = getSystemErrorName(errno); } catch { code = 'UNKNOWN'; }
  const err = new Error(`${syscall} ${code}${target === undefined ? '' : ` ${target}`}`) as NodeJS.ErrnoException;
  err.code = code;
  err.errno = errno;
  err.syscall = syscall;
  return err;
}
