/**
 * Runs inside the command's new network namespace, where the only interface is loopback:
 * brings loopback up, listens on 127.0.0.1:<port> and carries each connection over a Unix
 * socket to the forwarder outside (Unix sockets are file system objects, not bound to a
 * network namespace, so this is the namespace's only way out), then runs the command.
 *
 * Usage (internal): node ns-relay.js SOCKET PORT [--drop-caps] -- CMD ARGS...
 * With --drop-caps (root without a user namespace) the command runs with no capabilities and
 * no_new_privs (setpriv), so it cannot enter another network namespace.
 * Exit status: the command's, 128+signal when it was killed, 125 when the fence could not be
 * set up (never run unfenced from here).
 */
import { spawn, spawnSync } from 'node:child_process';
import { connect, createServer } from 'node:net';

function fail(msg: string): never {
  process.stderr.write(`chokepoint agent exec: ${msg}\n`);
  process.exit(125);
}

const argv = process.argv.slice(2);
const dropCaps = argv[2] === '--drop-caps';
if (dropCaps) argv.splice(2, 1);
const [sock, portText, sep, cmd, ...args] = argv;
if (sock === undefined || portText === undefined || sep !== '--' || cmd === undefined) fail('internal: bad relay arguments');
const port = Number(portText);

const up = spawnSync('ip', ['link', 'set', 'lo', 'up'], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
if (up.status !== 0) fail(`cannot bring loopback up in the namespace (${up.error?.message ?? up.stderr.trim()})`);

const server = createServer((c) => {
  const u = connect(sock);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
  c.pipe(u);
  u.pipe(c);
});
server.on('error', (e) => fail(`relay cannot listen on 127.0.0.1:${port}: ${e.message}`));
server.listen(port, '127.0.0.1', () => {
  const child = dropCaps
    ? spawn('setpriv', ['--bounding-set=-all', '--inh-caps=-all', '--ambient-caps=-all', '--no-new-privs', '--', cmd, ...args], { stdio: 'inherit', env: process.env })
    : spawn(cmd, args, { stdio: 'inherit', env: process.env });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(sig, () => child.kill(sig));
  child.on('error', (e) => fail(`cannot run ${cmd}: ${e.message}`));
  child.on('exit', (code, signal) => {
    server.close();
    process.exit(code ?? 128 + (signal ? (({ SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGHUP: 1 } as Record<string, number>)[signal] ?? 1) : 1));
  });
});
