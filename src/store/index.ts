/** The machine store: arcbox-core's `MachinePersistence` in TypeScript. */
export * from "./machine.js";
export {
  StoreError,
  MachineNotFoundError,
  InvalidConfigError,
  ConflictError,
  InvalidNameError,
  StoreIoError,
  formatIssue,
  controllerRule,
  type ConfigIssue,
} from "./errors.js";
export { isValidMachineName, validateMachineName, machineNameProblem } from "./names.js";
export { parseMachineConfig, type ParsedMachineConfig } from "./toml-codec.js";
export { readMachineConfig, MAX_CONFIG_BYTES, type Revision, type MachineConfigFile } from "./config-file.js";
export { isTempFileName, type DurableFsOps } from "./durable-write.js";
export { listDirectoryEntries, listMachineEntryNames, type DirectoryEntry, type ListOptions } from "./machine-entries.js";
export { checkMachinesDirTrust, findUntrustedDirectories, UntrustedMachinesDirError, type UntrustedDirectory } from "./trust.js";
export {
  MachineStore,
  CONFIG_FILE_NAME,
  type LoadedMachine,
  type MachineHandle,
  type InvalidMachine,
  type NotAMachine,
  type MachineStoreOptions,
  type UpdateOptions,
} from "./machine-store.js";
