/**
 * arcbox-controller as a library: the machine store (the port of arcbox-core's
 * `MachinePersistence`), the controller and its parts, and the metrics.
 */
export * from "./store/index.js";
export { probeLiveness, type LivenessMode, type LivenessOptions, type LivenessResult } from "./host/liveness.js";
export { probeDaemon, type DaemonStatus } from "./host/daemon-probe.js";
export { defaultProcessTable, processTable, type ProcessTable, type ProcessLookup } from "./host/process-table.js";
export { discoverHooks, runHooks, HookError, HookRefusedError, type NetworkHook, type HookContext } from "./host/hooks.js";
export { WorkQueue, type WorkQueueOptions, type WorkQueueObserver, type ProcessResult } from "./controller/workqueue.js";
export { Reconciler, ReconcileError, type ReconcileOutcome, type ReconcileRequestOptions, type MachineView } from "./controller/reconciler.js";
export { Controller, type ControllerOptions } from "./controller/controller.js";
export { reconcileOnce, type PassSummary, type PassOptions } from "./controller/reconcile-pass.js";
export { MachinesDirMissingError } from "./controller/machines-dir.js";
export { loadConfig, defaultConfig, parseDuration, ConfigError, type ControllerConfig } from "./controller/config.js";
export { acquireInstanceLock, LockHeldError, LockError, type InstanceLock } from "./host/instance-lock.js";
export { ControllerMetrics } from "./metrics/controller-metrics.js";
export { startMetricsServer, type MetricsServer, type MetricsServerOptions } from "./metrics/http-server.js";
export { ActivityLog, type ActivityEvent, type ActivityEntry, type ActivitySnapshot } from "./metrics/activity.js";
