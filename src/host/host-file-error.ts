/** A host file (hooks directory, pid file, lock file) could not be used: names the path and the errno code. */
export class HostFileError extends Error {
  constructor(
    readonly path: string,
    readonly code: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}
