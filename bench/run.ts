/**
 * `npm run bench`: the policy engine, the proxy, identity, mTLS, the sinks and the evidence
 * pipeline (`npm run bench -- NAME` runs one). Figures are JSON lines; compare runs on the same
 * machine only, and prefer ratios (bench/compare.sh) or CPU per unit of work to absolute rates.
 */
import { runPolicyBench } from './policy.js';
import { runProxyBench } from './proxy.js';
import { runIdentityBench } from './identity.js';
import { runMtlsBench } from './mtls.js';
import { runSinksBench } from './sinks.js';
import { runEvidenceBench } from './evidence.js';

const only = process.argv[2];
if (!only || only === 'policy') await runPolicyBench();
if (!only || only === 'proxy') await runProxyBench();
if (!only || only === 'identity') await runIdentityBench();
if (!only || only === 'mtls') await runMtlsBench();
if (!only || only === 'sinks') await runSinksBench();
if (!only || only === 'evidence') await runEvidenceBench();
