// What every benchmark shares for its output: the size and duration knobs (environment variables),
// figures with the baselines measured beside them in the same run, and the table they print as.
//
// A figure is { bench, figure, value, unit, baselines: [{ name, value, unit?, note? }], target?, met? }:
// `target` is the text of what it should be, `met` whether it is (or `max`, and `met` is value ≤ max).
// `value` is a number in `unit` ("ms", "MB", "%", "/s" or "" for a count), or null with a `note` saying
// why it is missing. Each bench prints its own table; with BENCH_RESULTS set (bench/run.mjs sets it),
// it also appends its figures there as JSON lines, for the table of the whole run.
import { appendFileSync } from "node:fs";

/** A positive number from the environment variable `name`, or `fallback`. Exits 2 naming the variable when it is not one. */
export function knob(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) usage(`${name}=${text}: expected a positive number`);
  return value;
}

/** A comma-separated list of positive integers from `name`, or `fallback`. Exits 2 naming the variable when it is not one. */
export function knobList(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const values = text.split(",").map((part) => Number(part.trim()));
  if (values.some((value) => !Number.isInteger(value) || value <= 0)) usage(`${name}=${text}: expected positive integers separated by commas`);
  return values;
}

function usage(message) {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

/** `n` with thousands separators (10000 → "10,000"), for labels. */
export const count = (n) => n.toLocaleString("en-US");

/** Collects one bench's figures; `print()` shows them as a table and hands them to the run's table. */
export class Report {
  constructor(bench) {
    this.bench = bench;
    this.figures = [];
  }

  /** Adds a figure (see the file comment); returns it. */
  add({ max, ...figure }) {
    const full = { bench: this.bench, baselines: [], ...figure };
    if (max !== undefined && full.met === undefined) full.met = typeof full.value === "number" ? full.value <= max : null;
    this.figures.push(full);
    if (process.env.BENCH_RESULTS) appendFileSync(process.env.BENCH_RESULTS, `${JSON.stringify(full)}\n`);
    return full;
  }

  /** Prints this bench's table on stdout. */
  print() {
    console.log(`\n${formatTable(this.figures)}`);
  }
}

/** A value in its unit, readable: 1234 ms → "1.23 s", 0.42 ms → "0.42 ms", 213.4 MB → "213 MB". */
export function formatValue(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "n/a";
  if (unit === "ms") {
    if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(2)} s`;
    return `${value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : value.toFixed(0)} ms`;
  }
  if (unit === "MB") return `${value.toFixed(value < 100 ? 1 : 0)} MB`;
  if (unit === "%") return `${value.toFixed(2)} %`;
  if (unit === "/s") return `${value < 100 ? value.toFixed(1) : count(Math.round(value))}/s`;
  return Number.isInteger(value) ? count(value) : value.toFixed(2);
}

/** How many times the baseline the figure is, when both are numbers in the same unit. */
function ratio(figure, baseline) {
  const unit = baseline.unit ?? figure.unit;
  if (unit !== figure.unit || typeof figure.value !== "number" || typeof baseline.value !== "number" || baseline.value <= 0) return "";
  return `×${(figure.value / baseline.value).toFixed(2)}`;
}

const verdict = (met) => (met === true ? "yes" : met === false ? "no" : "");

/** A missing value's reason, short enough for a cell (the bench prints it in full above its table). */
const missing = (note) => {
  const text = note ?? "not measured";
  return `n/a (${text.length > 60 ? `${text.slice(0, 59)}…` : text})`;
};

/** A table cell: a literal `|` would end the cell. */
const cell = (text) => text.replaceAll("|", "\\|");

/**
 * The figures as a Markdown table: one row per figure and baseline (a figure with several baselines
 * continues on rows whose first columns are empty). Columns: bench, figure, value, baseline, its
 * value, the figure as a multiple of the baseline, the target, and whether it is met.
 */
export function formatTable(figures) {
  const header = ["bench", "figure", "value", "baseline (same run)", "baseline value", "×", "target", "met"];
  const rows = [];
  for (const figure of figures) {
    const value = figure.value === null ? missing(figure.note) : formatValue(figure.value, figure.unit);
    const baselines = figure.baselines.length > 0 ? figure.baselines : [{ name: "—", value: undefined }];
    baselines.forEach((baseline, i) => {
      const baselineValue =
        baseline.value === undefined ? "" : baseline.value === null ? missing(baseline.note) : formatValue(baseline.value, baseline.unit ?? figure.unit);
      rows.push(
        i === 0
          ? [figure.bench, figure.figure, value, baseline.name, baselineValue, ratio(figure, baseline), figure.target ?? "", verdict(figure.met)]
          : ["", "", "", baseline.name, baselineValue, ratio(figure, baseline), "", ""],
      );
    });
  }
  for (const row of rows) row.forEach((text, column) => (row[column] = cell(text)));
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column].length)));
  const line = (cells) => `| ${cells.map((cell, column) => cell.padEnd(widths[column])).join(" | ")} |`;
  return [line(header), `|${widths.map((width) => "-".repeat(width + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}
