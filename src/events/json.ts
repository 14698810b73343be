/** One JSON text per event, shared by every sink and the store (events are immutable once published). */
import type { ChokepointEvent } from './catalogue.js';

const json = new WeakMap<object, string>();

/**
 * The event's JSON text, computed once per event however many sinks write it (events are
 * immutable once published, so the cache can never be stale).
 */
export function jsonOf(e: ChokepointEvent): string {
  let s = json.get(e);
  if (s === undefined) {
    s = JSON.stringify(e);
    json.set(e, s);
  }
  return s;
}

/**
 * Parses one event's JSON text and remembers that text as its JSON, so a sink on another
 * thread that received the text writes exactly those bytes without serializing them again.
 */
export function eventFromJson(text: string): ChokepointEvent {
  const e = JSON.parse(text) as ChokepointEvent;
  json.set(e, text);
  return e;
}
