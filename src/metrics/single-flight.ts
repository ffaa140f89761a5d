/**
 * Shares one run of `produce` among the callers that ask while it is in flight: the first call
 * starts a run, every call until that run settles gets the same promise, and the first call after
 * it settles starts a new run (a finished result is never handed out again). The shared value goes
 * to every caller, so it must be treated as read-only. Rejects, for every caller of that run, when
 * the run rejects or `produce` throws.
 */
export function singleFlight<T>(produce: () => Promise<T>): () => Promise<T> {
  let inFlight: Promise<T> | undefined;
  return () => {
    if (inFlight === undefined) {
      // Callers wait on what `finally` returns, so the run is forgotten before any of them resumes.
      inFlight = (async () => produce())().finally(() => {
        inFlight = undefined;
      });
    }
    return inFlight;
  };
}
