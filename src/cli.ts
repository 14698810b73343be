#!/usr/bin/env node
/**
 * The `chokepoint` command: the only place that wires modules together (DESIGN §1).
 */
import { Command, Option } from 'commander';
import { serveCommand } from './cli/serve.js';
import { policyCheckCommand, policyTestCommand } from './cli/policy.js';
import { configCheckCommand } from './cli/config.js';
import { VERSION } from './cli/version.js';
import { policyExportCommand } from './cli/export.js';
import { registerAgentCommands } from './cli/agent.js';
import { registerAdminCommands } from './cli/admin.js';
import { registerPolicyRemoteCommands } from './cli/remote-policy.js';
import { registerDeviceCommands } from './cli/remote-device.js';
import { registerEvidenceCommands } from './cli/remote-evidence.js';
import { registerCaCommands } from './cli/ca.js';

const program = new Command();
program.name('chokepoint').description('Default-deny egress gateway for outbound-only agents').version(VERSION);

program
  .command('serve')
  .description('run the gateway')
  .option('-c, --config <file>', 'configuration file (YAML); flags win over it')
  .option('--policy <file>', 'policy file (YAML, version 1); reloaded on change and on SIGHUP')
  .option('--proxy-listen <host:port>', 'plain proxy listener (default 127.0.0.1:3128)')
  .option('--proxy-threads <n>', 'threads serving the plain proxy listener; 0 = the main thread (default 0)')
  .option('--proxy-warmup <n>', 'synthetic connections that warm the data plane up before the proxy listener opens; 0 = none (default 2000)')
  .option('--events <file|->', 'where gateway events go as JSON lines: a file, - for stdout, none (default -)')
  .addOption(new Option('--log-level <level>', 'operational log level (stderr)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
  .option('--mtls-listen <host:port|off>', 'mTLS proxy listener for enrolled devices (default 127.0.0.1:3129)')
  .option('--control-listen <host:port>', 'control API and EST listener (default 127.0.0.1:8080): TLS from the built-in CA; plain HTTP too on loopback')
  .option('--data-dir <dir>', 'state directory: the SQLite store (default ./data)')
  .option('--database <url>', 'PostgreSQL store (postgres://…) instead of SQLite')
  .action(serveCommand);

const policy = program.command('policy').description('policy files');
policy
  .command('check <file>')
  .description('validate a policy file; prints every problem with its path and a fix; exit 1 if any')
  .option('--json', 'machine-readable output')
  .action(policyCheckCommand);
policy
  .command('test <file>')
  .description('decide one request offline (no DNS); exit 0 if allowed, 1 if denied')
  .requiredOption('--source <ip>', 'client address (selects the group by its sources)')
  .requiredOption('--dest <host:port>', 'destination (port defaults to 443)')
  .addOption(new Option('--protocol <p>', 'connect, or http for a plain-text absolute-form request').choices(['connect', 'http']).default('connect'))
  .option('--json', 'machine-readable output')
  .action(policyTestCommand);
policy
  .command('export')
  .description('host egress rules allowing only the gateway and approved resolvers (nftables, Windows Firewall) or the policy as Squid ACLs')
  .addOption(new Option('--format <format>', 'output format').choices(['nftables', 'windows-firewall', 'squid']).makeOptionMandatory())
  .requiredOption('--policy <file>', 'policy file (validated with the same loader as serve)')
  .option('--group <name>', 'export only this group (squid: a Squid dedicated to it)')
  .option('--gateway <ip:port,...>', 'gateway address(es): IP literals, [v6]:port for IPv6')
  .option('--resolver <ip,...>', 'approved DNS resolvers (port 53 unless ip:port)')
  .option('--program <path>', 'windows-firewall: absolute path of the program to fence')
  .action(policyExportCommand);

const config = program.command('config').description('gateway configuration files');
config
  .command('check <file>')
  .description('validate a configuration file; exit 1 on any problem')
  .action(configCheckCommand);

registerAgentCommands(program);
registerPolicyRemoteCommands(policy);
registerAdminCommands(program);
registerDeviceCommands(program);
registerEvidenceCommands(program);
registerCaCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`chokepoint: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
