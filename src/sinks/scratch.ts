/**
 * A buffer for the bytes of the batch being sent, written in place and kept for the next batch
 * (up to `keepMax`; 0 makes a new one each time).
 *
 * A batch is hundreds of KiB. Built as a string (`join`, `+=`, a template around it) and then
 * converted, every batch allocated that much twice in fresh memory: V8 puts strings that large
 * in pages of their own, and glibc serves buffers that large with mmap, so each batch
 * page-faulted its way through new pages (perf on the sinks' thread: memmove in page faults was
 * the largest item, under a hypervisor that makes faults dear). This buffer is written in place
 * and reused, so a steady stream of batches touches the same pages.
 *
 * The bytes are valid until the next `begin()`: a transport calls it only once the previous
 * send has finished (the delivery loop sends one batch at a time), and hands the socket a view
 * that it no longer needs by then.
 */
export class Scratch {
  #buf: Buffer = Buffer.allocUnsafe(0);
  #len = 0;
  #want = 0;
  /**
   * Above this the buffer is not kept between batches (one huge batch must not pin its size).
   * The default holds a full syslog batch: 1 MiB of records plus their octet counts.
   */
  readonly #keepMax: number;

  constructor(keepMax = 2 * 1024 * 1024) {
    this.#keepMax = keepMax;
  }

  /** Starts a batch of at most `bytes` bytes (UTF-8). */
  begin(bytes: number): void {
    if (this.#buf.length < bytes || this.#buf.length > this.#keepMax) {
      // Grown with room to spare, so that a batch a little larger than the last reuses it.
      this.#buf = Buffer.allocUnsafe(bytes <= this.#keepMax ? Math.min(this.#keepMax, Math.max(bytes, 2 * this.#buf.length, 64 * 1024)) : bytes);
    }
    this.#len = 0;
    this.#want = bytes;
  }

  /** Appends a string as UTF-8; the caller counted its bytes into `begin`. */
  text(s: string): void {
    this.#len += this.#buf.write(s, this.#len);
  }

  byte(b: number): void {
    this.#buf[this.#len++] = b;
  }

  /** The bytes written since `begin` (a view: valid until the next `begin`). */
  bytes(): Buffer {
    // A count that disagreed with what was written would cut the batch short (Buffer.write
    // stops at the end) and put the receiver's framing out of step for good: refuse to send.
    if (this.#len !== this.#want) throw new Error(`internal: batch of ${this.#want} bytes announced, ${this.#len} written`);
    return this.#buf.subarray(0, this.#len);
  }
}
