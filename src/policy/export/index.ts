/** Host egress rule exporters (issue #6): nftables, Windows Firewall, Squid. */
export { exportNftables, NFT_TABLE } from './nftables.js';
export { exportWindowsFirewall, WINDOWS_RULE_GROUP } from './windows.js';
export { exportSquid } from './squid.js';
export { parseEndpoint, parseEndpointList, policyModel, type Endpoint, type ExportInput } from './inputs.js';
