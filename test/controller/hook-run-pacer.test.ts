import { describe, expect, it } from "vitest";
import { BackoffPacer } from "../../src/controller/hook-run-pacer.js";
import type { Revision } from "../../src/store/index.js";

const A = "sha256:a" as Revision;
const B = "sha256:b" as Revision;

describe("BackoffPacer", () => {
  function pacer() {
    let now = 0;
    const p = new BackoffPacer({ baseMs: 100, maxMs: 1000, now: () => now });
    return { p, advance: (ms: number) => (now += ms) };
  }

  it("lets a first run go at once, then waits 100, 200, 400 … ms between runs of the same content, capped", () => {
    const { p, advance } = pacer();
    expect(p.delayFor("web", A)).toBe(0);
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      p.ran("web", A);
      const wait = p.delayFor("web", A);
      waits.push(wait);
      advance(wait);
      expect(p.delayFor("web", A)).toBe(0);
    }
    expect(waits).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it("does not pace other content, other machines, or a run after a quiet spell", () => {
    const { p, advance } = pacer();
    p.ran("web", A);
    p.ran("web", A);
    expect(p.delayFor("web", A)).toBe(200);
    expect(p.delayFor("web", B)).toBe(0);
    expect(p.delayFor("db", A)).toBe(0);
    advance(200);
    p.ran("web", A); // within twice the wait: the streak goes on
    expect(p.delayFor("web", A)).toBe(400);
    advance(5000);
    p.ran("web", A); // long after: a new streak
    expect(p.delayFor("web", A)).toBe(100);
    p.forget("web");
    expect(p.delayFor("web", A)).toBe(0);
  });
});
