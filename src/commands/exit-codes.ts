/**
 * Exit statuses the commands share (docs/design.md#exit-codes). Service managers act on them: the
 * units restart after any failure but a configuration error, which a restart cannot fix.
 */

/** A usage or configuration error: nothing was touched; fix the flag, file or path named. */
export const EXIT_CONFIG_ERROR = 2;

/**
 * Another controller holds the machines path's lock: try again later (EX_TEMPFAIL). A service unit
 * restarts after it, so a controller takes over once the other one has gone.
 */
export const EXIT_LOCK_HELD = 75;
