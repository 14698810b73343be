/**
 * The policy engine's public surface (DESIGN §1: pure; imports only core). The gateway holds
 * a CompiledPolicy; the CLI and the control plane load one with loadPolicy / loadPolicyFile.
 */
export { loadPolicy, MAX_ALIAS_COUNT, type LoadOptions } from './load.js';
export { loadPolicyFile, MAX_POLICY_BYTES } from './file.js';
export { loadPolicyOffThread, OFFTHREAD_MIN_BYTES } from './offthread.js';
export { compilePolicy, type LoadResult } from './compile.js';
export type { PolicyDocument, AllowRuleDocument, DenyRuleDocument, GroupDocument } from './schema.js';
export { classifyAddress, CLASS_TABLE, type ClassRow } from './classify.js';
export { parseHostPattern, patternMatches, type HostPattern, type PatternKind } from './hostpattern.js';
export { parseCidr, parseIp, formatIp, type Cidr, type Ip } from './cidr.js';
export type {
  AddressClass, AddressVerdict, CompiledPolicy, Decision, DecideInput, GroupInfo, GroupMode, Protocol, TlsMode,
} from './types.js';
