export {
  ControllerMetrics,
  WATCH_EVENTS,
  type ControllerMetricsOptions,
  type HookResult,
  type InFlightSource,
  type ReconcileResult,
  type RecoveryResult,
  type StoreWriteResult,
  type WorkQueueMetrics,
} from "./controller-metrics.js";
export { escapeHelpText, escapeLabelValue } from "./exposition.js";
export { renderHealthReport, type HealthCheck, type HealthReport, type HealthSource } from "./health.js";
export {
  MetricsServerError,
  startMetricsServer,
  type MetricsServer,
  type MetricsServerOptions,
} from "./http-server.js";
export { escapeHtml, renderLandingPage } from "./landing-page.js";
export {
  DEFAULT_LISTEN_HOST,
  ListenAddressError,
  formatListenAddress,
  isLoopbackAddress,
  parseListenAddress,
} from "./listen-address.js";
export { MACHINE_METRIC_STATES, type MachineMetricState, type MachineView } from "./machine-table.js";
