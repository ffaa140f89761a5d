import { performance } from "node:perf_hooks";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import {
  MACHINE_METRIC_STATES,
  MachineTable,
  type MachineMetricState,
  type MachineView,
} from "./machine-table.js";
import { registerNodeMetrics } from "./node-metrics.js";

export type ReconcileResult = "success" | "error" | "requeue_after";
export type RecoveryResult = "success" | "error";
export type HookResult = "success" | "failure" | "timeout";
export type StoreWriteResult = "success" | "conflict" | "error";
/** What a path that stopped answering is: a machine directory, the daemon's lock, the hooks or the machines directory. */
export type UnresponsivePathKind = "machine" | "daemon_lock" | "hooks" | "machines_dir";

const RECONCILE_RESULTS: readonly ReconcileResult[] = ["success", "error", "requeue_after"];
const RECOVERY_RESULTS: readonly RecoveryResult[] = ["success", "error"];
const HOOK_RESULTS: readonly HookResult[] = ["success", "failure", "timeout"];
const STORE_WRITE_RESULTS: readonly StoreWriteResult[] = ["success", "conflict", "error"];
const UNRESPONSIVE_PATH_KINDS: readonly UnresponsivePathKind[] = ["machine", "daemon_lock", "hooks", "machines_dir"];
/** chokidar's event names the controller listens to; pre-created so rate() works from the start. */
export const WATCH_EVENTS = ["add", "change", "unlink", "addDir", "unlinkDir", "error"] as const;

/**
 * Reconciles and hooks: a healthy reconcile (read one TOML file, probe a pid) takes about a
 * millisecond, while a recovery runs networking hooks that may take tens of seconds before their
 * timeout. Roughly ×2.5 steps from 1 ms to 60 s resolve both ends with 15 buckets.
 */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/**
 * Queue wait and work time: the same scale, extended to 5 min because at start-up thousands of
 * keys wait behind a few workers, and a key's work is a whole reconcile including its hooks.
 */
const QUEUE_BUCKETS = [...DURATION_BUCKETS, 120, 300];

/**
 * How often the event-loop delay is sampled (prom-client's default is every 10 ms, which alone
 * wakes an idle service 100 times a second). A blocked loop still shows: the sample that was due
 * during the block comes late by as much.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

/** Options of ControllerMetrics. */
export interface ControllerMetricsOptions {
  /** Export `arcbox_machine_state` (one series per machine). Default true. */
  perMachineMetrics?: boolean;
  /** Reported as `arcbox_controller_build_info{version}`. */
  version: string;
  /** Export `arcbox_daemon_up` (only meaningful with `liveness = "daemon"`). Default false. */
  daemonLiveness?: boolean;
}

/** The work queue's instrumentation points, with client-go's workqueue metric meanings. */
export interface WorkQueueMetrics {
  /** A key was added (also when it was already waiting). */
  added(key: string): void;
  /** The number of keys now waiting. */
  depth(waiting: number): void;
  /** A key waited this long between being added and being picked up by a worker. */
  queued(seconds: number): void;
  /** A worker spent this long on a key. */
  worked(seconds: number): void;
  /** A key was re-added with backoff after a failure. */
  retried(key: string): void;
}

/** Work being processed right now; `startedAt` is `performance.now()` (ms) when it started. */
export type InFlightSource = () => Iterable<{ readonly startedAt: number }>;

/**
 * Every metric of the controller (docs/design.md#metrics) in one prom-client Registry, plus the process and
 * Node.js metrics of node-metrics.ts. The controller reports events through the methods; nothing
 * here reads back from the controller except the in-flight source at scrape time.
 */
export class ControllerMetrics {
  /** The registry behind `metricsText()`; `arcbox_machine_state` is rendered outside it. */
  readonly registry = new Registry();
  readonly version: string;
  readonly perMachineMetrics: boolean;
  /** Whether `arcbox_daemon_up` is exported (`liveness = "daemon"`). */
  readonly daemonLiveness: boolean;
  readonly workqueue: WorkQueueMetrics;

  readonly #machines = new MachineTable();
  #inFlight: InFlightSource = () => [];

  readonly #recoveries: Counter<"result">;
  readonly #reconciles: Counter<"result">;
  readonly #reconcileErrors: Counter;
  readonly #reconcileDuration: Histogram;
  readonly #hookRuns: Counter<"hook" | "result">;
  readonly #hookDuration: Histogram<"hook">;
  readonly #storeWrites: Counter<"result">;
  readonly #watchEvents: Counter<"event">;
  readonly #lastResync: Gauge;
  readonly #daemonUp: Gauge | undefined;
  #daemonStatus: boolean | undefined;
  readonly #livenessProbeErrors: Counter;
  readonly #unresponsivePaths: Gauge<"kind">;

  /** Registers every metric; throws only if prom-client rejects a definition (a programming error). */
  constructor(options: ControllerMetricsOptions) {
    this.version = options.version;
    this.perMachineMetrics = options.perMachineMetrics ?? true;
    this.daemonLiveness = options.daemonLiveness ?? false;
    const registers = [this.registry];
    const machines = this.#machines;

    new Gauge({
      name: "arcbox_machines",
      help: "Number of machines by state (invalid: config.toml could not be read or validated).",
      labelNames: ["state"],
      registers,
      collect() {
        for (const state of MACHINE_METRIC_STATES) this.set({ state }, machines.count(state));
      },
    });
    new Gauge({
      name: "arcbox_machines_needing_recovery",
      help: "Number of machines whose file says running while no live VM backs it.",
      registers,
      collect() {
        this.set(machines.needingRecovery);
      },
    });

    this.#recoveries = new Counter({
      name: "arcbox_recoveries_total",
      help: "Recoveries (hooks run, state persisted as stopped) by result.",
      labelNames: ["result"],
      registers,
    });
    this.#reconciles = new Counter({
      name: "arcbox_reconcile_total",
      help: "Reconciles by result.",
      labelNames: ["result"],
      registers,
    });
    this.#reconcileErrors = new Counter({
      name: "arcbox_reconcile_errors_total",
      help: "Reconciles that ended in an error (retried with backoff).",
      registers,
    });
    this.#reconcileDuration = new Histogram({
      name: "arcbox_reconcile_duration_seconds",
      help: "Time spent in one reconcile.",
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#hookRuns = new Counter({
      name: "arcbox_network_hook_runs_total",
      help: "Networking hook runs by hook and result.",
      labelNames: ["hook", "result"],
      registers,
    });
    this.#hookDuration = new Histogram({
      name: "arcbox_network_hook_duration_seconds",
      help: "Time one networking hook run took, by hook.",
      labelNames: ["hook"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#storeWrites = new Counter({
      name: "arcbox_store_writes_total",
      help: "Writes of config.toml by result (conflict: the file changed since it was read).",
      labelNames: ["result"],
      registers,
    });
    this.#watchEvents = new Counter({
      name: "arcbox_watch_events_total",
      help: "File system watch events received, by event.",
      labelNames: ["event"],
      registers,
    });
    this.#lastResync = new Gauge({
      name: "arcbox_last_resync_timestamp_seconds",
      help: "Unix time of the last completed full resync (0 before the first).",
      registers,
    });
    new Gauge({
      name: "arcbox_controller_build_info",
      help: "Always 1; labelled with the controller's version.",
      labelNames: ["version"],
      registers,
    }).set({ version: this.version }, 1);

    this.#daemonUp = this.daemonLiveness
      ? new Gauge({
          name: "arcbox_daemon_up",
          help: "1 while the arcbox daemon holds its lock (its machines' VMs can run), else 0.",
          registers,
        })
      : undefined;
    this.#livenessProbeErrors = new Counter({
      name: "arcbox_liveness_probe_errors_total",
      help: "Liveness probes that failed unexpectedly (EACCES, EIO …); the VM was then assumed alive or the reconcile retried.",
      registers,
    });

    this.#unresponsivePaths = new Gauge({
      name: "arcbox_unresponsive_paths",
      help: "Paths with a file system call past its 10 s deadline (a hung mount?): their machines, probes or hooks fail until they answer.",
      labelNames: ["kind"],
      registers,
    });
    for (const kind of UNRESPONSIVE_PATH_KINDS) this.#unresponsivePaths.set({ kind }, 0);

    this.workqueue = this.#createWorkQueueMetrics();

    for (const result of RECOVERY_RESULTS) this.#recoveries.inc({ result }, 0);
    for (const result of RECONCILE_RESULTS) this.#reconciles.inc({ result }, 0);
    for (const result of STORE_WRITE_RESULTS) this.#storeWrites.inc({ result }, 0);
    for (const event of WATCH_EVENTS) this.#watchEvents.inc({ event }, 0);

    registerNodeMetrics(this.registry, { eventLoopSampleMs: EVENT_LOOP_SAMPLE_MS });
  }

  /** The Content-Type of `metricsText()` (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * Records a machine's current state (replacing what was known of it); `alive` (null: unknown) is
   * shown on the landing page only. Throws a TypeError for a state outside
   * created/running/stopped/invalid.
   */
  setMachine(name: string, state: MachineMetricState, needsRecovery: boolean, alive: boolean | null = null): void {
    this.#machines.set(name, state, needsRecovery, alive);
  }

  /** Forgets a machine and its series. Unknown names are ignored. */
  deleteMachine(name: string): void {
    this.#machines.delete(name);
  }

  /** The machines as last reported, sorted by name. */
  machines(): ReadonlyArray<MachineView> {
    return this.#machines.list();
  }

  /** Counts a finished reconcile and observes its duration; an error also counts in the errors total. */
  reconcileFinished(result: ReconcileResult, seconds: number): void {
    this.#reconciles.inc({ result });
    this.#reconcileDuration.observe(seconds);
    if (result === "error") this.#reconcileErrors.inc();
  }

  /** Counts a finished recovery attempt. */
  recoveryFinished(result: RecoveryResult): void {
    this.#recoveries.inc({ result });
  }

  /** Counts a networking hook run and observes its duration. */
  hookFinished(hook: string, result: HookResult, seconds: number): void {
    this.#hookRuns.inc({ hook, result });
    this.#hookDuration.observe({ hook }, seconds);
  }

  /** Creates the series of these hooks at 0 (every result, and the duration histogram). */
  knownHooks(names: readonly string[]): void {
    for (const hook of names) {
      for (const result of HOOK_RESULTS) this.#hookRuns.inc({ hook, result }, 0);
      this.#hookDuration.zero({ hook });
    }
  }

  /** Counts one write of a machine's config file. */
  storeWrite(result: StoreWriteResult): void {
    this.#storeWrites.inc({ result });
  }

  /** A path of this kind stopped answering (`+1`) or answers again (`-1`). */
  unresponsivePath(kind: UnresponsivePathKind, change: 1 | -1): void {
    this.#unresponsivePaths.inc({ kind }, change);
  }

  /** Counts one watch event (any name; the usual ones exist from start-up). */
  watchEvent(event: string): void {
    this.#watchEvents.inc({ event });
  }

  /** Records whether the arcbox daemon holds its lock (no-op unless `daemonLiveness`). */
  daemonUp(up: boolean): void {
    if (this.#daemonUp === undefined) return;
    this.#daemonUp.set(up ? 1 : 0);
    this.#daemonStatus = up;
  }

  /** Whether the arcbox daemon was up at the last probe; undefined before one, or without `daemonLiveness`. */
  get daemonStatus(): boolean | undefined {
    return this.#daemonStatus;
  }

  /** Counts one unexpected liveness-probe failure. */
  livenessProbeError(): void {
    this.#livenessProbeErrors.inc();
  }

  /** Records when a full resync completed. */
  resyncCompleted(at: Date): void {
    this.#lastResync.set(at.getTime() / 1000);
  }

  /**
   * Sets where the in-flight work is read from at scrape time, for the unfinished-work and
   * longest-running gauges. Replaces any earlier source.
   */
  trackInFlight(source: InFlightSource): void {
    this.#inFlight = source;
  }

  /**
   * The whole exposition: prom-client's registry followed by the pre-rendered per-machine family.
   * Rejects if a collect callback (e.g. the in-flight source) throws.
   */
  async metricsText(): Promise<string> {
    return Buffer.concat(await this.metricsBody()).toString("utf8");
  }

  /**
   * The exposition of `metricsText()` as the chunks a response sends one after the other: the
   * registry's families, then the pre-encoded `arcbox_machine_state` family (shared; not to be
   * modified).
   */
  async metricsBody(): Promise<Uint8Array[]> {
    const text = await this.registry.metrics();
    return this.perMachineMetrics ? [Buffer.from(`${text}\n`, "utf8"), this.#machines.renderFamily()] : [Buffer.from(text, "utf8")];
  }

  #createWorkQueueMetrics(): WorkQueueMetrics {
    const registers = [this.registry];
    const adds = new Counter({
      name: "arcbox_workqueue_adds_total",
      help: "Keys added to the work queue.",
      registers,
    });
    const retries = new Counter({
      name: "arcbox_workqueue_retries_total",
      help: "Keys re-added to the work queue with backoff after a failure.",
      registers,
    });
    const depth = new Gauge({
      name: "arcbox_workqueue_depth",
      help: "Keys waiting in the work queue.",
      registers,
    });
    const queueDuration = new Histogram({
      name: "arcbox_workqueue_queue_duration_seconds",
      help: "Time a key waits in the work queue before a worker picks it up.",
      buckets: QUEUE_BUCKETS,
      registers,
    });
    const workDuration = new Histogram({
      name: "arcbox_workqueue_work_duration_seconds",
      help: "Time a worker spends processing one key.",
      buckets: QUEUE_BUCKETS,
      registers,
    });
    // One reading of the in-flight work per scrape, so both gauges agree (longest <= unfinished):
    // prom-client runs every collect() in the same synchronous pass, so a microtask ends the reading.
    let reading: { unfinished: number; longest: number } | undefined;
    const readInFlight = (): { unfinished: number; longest: number } => {
      if (reading === undefined) {
        const now = performance.now();
        let unfinished = 0;
        let longest = 0;
        for (const work of this.#inFlight()) {
          const age = Math.max(0, now - work.startedAt) / 1000;
          unfinished += age;
          longest = Math.max(longest, age);
        }
        reading = { unfinished, longest };
        queueMicrotask(() => {
          reading = undefined;
        });
      }
      return reading;
    };
    new Gauge({
      name: "arcbox_workqueue_unfinished_work_seconds",
      help: "Sum of the ages of the work in progress; a growing value points at stuck workers.",
      registers,
      collect() {
        this.set(readInFlight().unfinished);
      },
    });
    new Gauge({
      name: "arcbox_workqueue_longest_running_processor_seconds",
      help: "Age of the longest-running work in progress.",
      registers,
      collect() {
        this.set(readInFlight().longest);
      },
    });
    return {
      added: () => adds.inc(),
      depth: (waiting) => depth.set(waiting),
      queued: (seconds) => queueDuration.observe(seconds),
      worked: (seconds) => workDuration.observe(seconds),
      retried: () => retries.inc(),
    };
  }
}
