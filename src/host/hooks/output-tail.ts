/**
 * Keeps only the last `limit` bytes of a stream, so a hook that writes without end cannot exhaust
 * the controller's memory. Memory held stays below `limit` plus one chunk.
 */
export class OutputTail {
  private readonly chunks: Buffer[] = [];
  private size = 0;

  /** Throws a RangeError when `limit` is not a positive integer. */
  constructor(readonly limit: number) {
    if (!Number.isSafeInteger(limit) || limit <= 0) {
      throw new RangeError(`output tail limit must be a positive integer, got ${limit}`);
    }
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    // Drop whole chunks that lie entirely before the last `limit` bytes.
    for (let first = this.chunks[0]; first !== undefined && this.size - first.length >= this.limit; first = this.chunks[0]) {
      this.chunks.shift();
      this.size -= first.length;
    }
  }

  /** The kept bytes (at most `limit`) decoded as UTF-8; invalid or cut sequences become U+FFFD. */
  text(): string {
    let bytes = Buffer.concat(this.chunks);
    if (bytes.length > this.limit) {
      bytes = bytes.subarray(bytes.length - this.limit);
      // Skip continuation bytes of a character cut in half by the bound, rather than show U+FFFD.
      let start = 0;
      while (start < 3 && start < bytes.length && ((bytes[start] ?? 0) & 0xc0) === 0x80) start++;
      bytes = bytes.subarray(start);
    }
    return bytes.toString("utf8");
  }
}
