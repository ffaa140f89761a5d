/**
 * The one line a command writes on stderr for a problem or a note: `arcbox-controller: <message>`,
 * the message spelled by escapeText, since the paths and names in it come from the disk and may
 * hold a newline (a forged line) or a terminal escape.
 */
import { escapeText } from "../platform/escape-text.js";

/** `arcbox-controller: <message, escaped>` and a newline. Never throws. */
export function messageLine(message: string): string {
  return `arcbox-controller: ${escapeText(message)}\n`;
}
