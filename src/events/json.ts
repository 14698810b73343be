/** One JSON text per event, shared by every sink and the store (events are immutable once published). */
import type { ChokepointEvent } from './catalogue.js';

/**
 * The last event serialized and its text. The bus hands one event to every subscriber in turn,
 * so the sinks that write it ask for its text one after another: remembering the last one is
 * enough for them to share one serialization. (A WeakMap over every event did the same and
 * more, but its write barrier and the garbage collector's ephemeron work cost about 2 µs per
 * short tunnel, most of what serializing its two events costs: perf on the sinks bench.) A
 * later caller for an older event (the store, batching decisions) serializes it again: the
 * same text, as JSON.stringify is deterministic for an unchanged object.
 */
let lastEvent: object | null = null;
let lastText = '';

/** The event's JSON text (computed once while it is being published, however many sinks write it). */
export function jsonOf(e: ChokepointEvent): string {
  if (e === lastEvent) return lastText;
  const s = JSON.stringify(e);
  lastEvent = e;
  lastText = s;
  return s;
}

/**
 * Parses one event's JSON text and remembers that text as its JSON, so a sink on another
 * thread that received the text writes exactly those bytes without serializing them again.
 */
export function eventFromJson(text: string): ChokepointEvent {
  const e = JSON.parse(text) as ChokepointEvent;
  lastEvent = e;
  lastText = text;
  return e;
}
