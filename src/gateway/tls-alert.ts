/**
 * A fatal TLS alert record (RFC 8446 §6, RFC 5246 §7.2): how the gateway says "no" after
 * `200 Connection established`, when an HTTP answer is no longer possible (DESIGN §2). The
 * client's TLS stack reports it as an ordinary handshake failure with the matching
 * description. It is sent in plaintext, before any key exchange, as a server may do at that
 * point of the handshake.
 */
export type TlsAlertName = 'unrecognized_name' | 'protocol_version' | 'access_denied';

/** AlertDescription values (RFC 8446 §6). */
export const TLS_ALERT_DESCRIPTION: Readonly<Record<TlsAlertName, number>> = Object.freeze({
  access_denied: 49,
  protocol_version: 70,
  unrecognized_name: 112,
});

const CONTENT_TYPE_ALERT = 21;
const LEVEL_FATAL = 2;

/**
 * `recordVersion` is the legacy record version. 0x0301 is accepted by every TLS stack, old
 * ones included; TLS 1.3 receivers ignore the field "for all purposes" (RFC 8446 §5.1).
 * Out-of-range values fall back to it.
 */
export function tlsAlertRecord(alert: TlsAlertName, recordVersion = 0x0301): Buffer {
  const v = Number.isInteger(recordVersion) && recordVersion >= 0 && recordVersion <= 0xffff ? recordVersion : 0x0301;
  const d = TLS_ALERT_DESCRIPTION[alert] ?? TLS_ALERT_DESCRIPTION.access_denied;
  // ContentType alert(21), legacy_record_version, length 2, AlertLevel fatal(2), AlertDescription.
  return Buffer.from([CONTENT_TYPE_ALERT, v >> 8, v & 0xff, 0, 2, LEVEL_FATAL, d]);
}
