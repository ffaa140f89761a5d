/**
 * Pieces of the Prometheus text exposition format (version 0.0.4) that prom-client does not export,
 * needed to pre-render series outside its registry.
 */

/**
 * Escapes a label value for the text format: backslash, double quote and line feed are the only
 * characters the format escapes. Never fails.
 */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/**
 * Escapes `# HELP` text: backslash and line feed (quotes stay as they are there). Never fails.
 */
export function escapeHelpText(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

/** Renders the `# HELP` and `# TYPE` lines that open a metric family, each ending in a line feed. */
export function familyHeader(name: string, type: "counter" | "gauge" | "histogram", help: string): string {
  return `# HELP ${name} ${escapeHelpText(help)}\n# TYPE ${name} ${type}\n`;
}
