/**
 * The policy file format, version 1 (DESIGN §3, §6.4): the shape of the document as written,
 * snake_case, validated by zod with strict objects so that a misspelt key (`port:` for
 * `ports:`) is an error rather than a silently ignored line. What the values mean (canonical
 * hosts, CIDRs, overlaps...) is checked by analyze.ts; compile.ts builds the matcher.
 */
import * as z from 'zod';

const PORT_MSG = 'port must be an integer from 1 to 65535';
const Port = z.number({ error: PORT_MSG }).int({ error: PORT_MSG }).min(1, { error: PORT_MSG }).max(65535, { error: PORT_MSG });
const Ports = z.array(Port, { error: 'ports must be a list of port numbers, e.g. [443]' })
  .min(1, { error: 'ports must not be empty (omit it for the default)' });
const Tls = z.enum(['required', 'optional', 'none'], { error: 'tls must be one of "required", "optional", "none"' });
const Mode = z.enum(['enforce', 'report'], { error: 'mode must be "enforce" or "report"' });
const Text = z.string({ error: 'expected a string' });
const CidrText = z.string({ error: 'expected a CIDR string, e.g. "10.0.0.0/8"' });

const ruleFields = {
  host: z.string({ error: 'host must be a string, e.g. "api.example.com"' }).optional(),
  address: CidrText.optional(),
  ports: Ports.optional(),
  description: Text.optional(),
};

export const AllowRuleSchema = z.strictObject({ ...ruleFields, tls: Tls.optional() });
export const DenyRuleSchema = z.strictObject(ruleFields);

/** A list entry: a host pattern string (shorthand for `{host: ...}`) or a rule object. */
const AllowEntry = z.union([z.string(), AllowRuleSchema]);
const DenyEntry = z.union([z.string(), DenyRuleSchema]);

export const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

export const GroupSchema = z.strictObject({
  name: z.string({ error: 'group name must be a string' }).regex(GROUP_NAME, {
    // The name is part of rule ids (`groups.<name>.allow[0]`): no dots or brackets.
    error: 'group name must be 1 to 63 letters, digits, "-" or "_", starting with a letter or digit',
  }),
  description: Text.optional(),
  sources: z.array(CidrText, { error: 'sources must be a list of CIDRs' }).optional(),
  mode: Mode.optional(),
  allow: z.array(AllowEntry, { error: 'allow must be a list of rules' }).optional(),
  deny: z.array(DenyEntry, { error: 'deny must be a list of rules' }).optional(),
});

export const PolicyFileSchema = z.strictObject({
  version: z.literal(1, {
    error: (iss) => (iss.input === undefined ? 'missing "version"; this format is version 1' : 'unsupported version; this gateway reads version 1'),
  }),
  address_exceptions: z.array(CidrText, { error: 'address_exceptions must be a list of CIDRs' }).optional(),
  groups: z.array(GroupSchema, { error: 'groups must be a list of groups' }),
  global: z.strictObject({
    deny: z.array(DenyEntry, { error: 'deny must be a list of rules' }).optional(),
  }, { error: 'global must be a mapping with a "deny" list' }).optional(),
});

/** The validated file model: exactly what a version 1 policy file may contain. */
export type PolicyDocument = z.input<typeof PolicyFileSchema>;
export type AllowRuleDocument = z.input<typeof AllowRuleSchema>;
export type DenyRuleDocument = z.input<typeof DenyRuleSchema>;
export type GroupDocument = z.input<typeof GroupSchema>;

/** Keys each object may carry, for "did you mean" fixes on unknown keys. */
export const KNOWN_KEYS: readonly string[] = [
  'version', 'address_exceptions', 'groups', 'global',
  'name', 'description', 'sources', 'mode', 'allow', 'deny',
  'host', 'address', 'ports', 'tls',
];
