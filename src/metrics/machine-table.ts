import { familyHeader, escapeLabelValue } from "./exposition.js";

/** The states the controller reports for a machine: the persisted ones plus `invalid` (bad config). */
export const MACHINE_METRIC_STATES = ["created", "running", "stopped", "invalid"] as const;
export type MachineMetricState = (typeof MACHINE_METRIC_STATES)[number];

/** One machine as the controller last reported it. */
export interface MachineView {
  readonly name: string;
  readonly state: MachineMetricState;
  readonly needsRecovery: boolean;
  /** Whether a live VM backs it, as last probed; null when unknown (an invalid config). */
  readonly alive: boolean | null;
}

interface Entry extends MachineView {
  /** This machine's `arcbox_machine_state` sample line, rendered when its state last changed. */
  readonly line: string;
}

export const MACHINE_STATE_METRIC = "arcbox_machine_state";
const MACHINE_STATE_HELP =
  "Current state of each machine: one series per machine, value 1, labelled with its state.";

/**
 * The controller's view of every machine (name → state, needs-recovery), with per-state counts kept
 * up to date and each machine's `arcbox_machine_state` line pre-rendered, kube-state-metrics style:
 * a scrape then only joins strings instead of asking prom-client to hash and format thousands of
 * label sets.
 */
export class MachineTable {
  readonly #entries = new Map<string, Entry>();
  readonly #counts = new Map<MachineMetricState, number>(MACHINE_METRIC_STATES.map((s) => [s, 0]));
  #needingRecovery = 0;
  /**
   * The joined `arcbox_machine_state` family, encoded once: a scrape sends these bytes as they are
   * (no string of the whole family to build, flatten and encode each time). Dropped whenever a
   * machine's line changes.
   */
  #renderedFamily: Buffer | undefined;

  /**
   * Records a machine's current state. Throws a TypeError when `state` is not one of
   * MACHINE_METRIC_STATES (only possible from untyped callers).
   */
  set(name: string, state: MachineMetricState, needsRecovery: boolean, alive: boolean | null = null): void {
    if (!this.#counts.has(state)) {
      throw new TypeError(
        `machine "${name}": unknown state "${String(state)}" (expected one of ${MACHINE_METRIC_STATES.join(", ")})`,
      );
    }
    const previous = this.#entries.get(name);
    if (previous?.state === state && previous.needsRecovery === needsRecovery && previous.alive === alive) return;
    if (previous) this.#forget(previous);
    const line =
      previous?.state === state
        ? previous.line
        : `${MACHINE_STATE_METRIC}{machine="${escapeLabelValue(name)}",state="${state}"} 1\n`;
    this.#entries.set(name, { name, state, needsRecovery, alive, line });
    this.#counts.set(state, (this.#counts.get(state) ?? 0) + 1);
    if (needsRecovery) this.#needingRecovery += 1;
    if (previous?.state !== state) this.#renderedFamily = undefined;
  }

  /** Forgets a machine; returns false when it was not known. Never fails. */
  delete(name: string): boolean {
    const previous = this.#entries.get(name);
    if (!previous) return false;
    this.#forget(previous);
    this.#entries.delete(name);
    this.#renderedFamily = undefined;
    return true;
  }

  /** Number of machines currently in `state`. */
  count(state: MachineMetricState): number {
    return this.#counts.get(state) ?? 0;
  }

  /** Number of machines currently flagged as needing recovery. */
  get needingRecovery(): number {
    return this.#needingRecovery;
  }

  /** Every known machine, sorted by name. */
  list(): MachineView[] {
    return [...this.#entries.values()]
      .map(({ name, state, needsRecovery, alive }) => ({ name, state, needsRecovery, alive }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * The complete `arcbox_machine_state` family (HELP, TYPE, one line per machine, ending in a line
   * feed) as UTF-8. The same buffer is returned until a machine changes: callers must not modify it.
   */
  renderFamily(): Buffer {
    if (this.#renderedFamily === undefined) {
      const lines: string[] = [familyHeader(MACHINE_STATE_METRIC, "gauge", MACHINE_STATE_HELP)];
      for (const entry of this.#entries.values()) lines.push(entry.line);
      this.#renderedFamily = Buffer.from(lines.join(""), "utf8");
    }
    return this.#renderedFamily;
  }

  #forget(entry: Entry): void {
    this.#counts.set(entry.state, (this.#counts.get(entry.state) ?? 0) - 1);
    if (entry.needsRecovery) this.#needingRecovery -= 1;
  }
}
