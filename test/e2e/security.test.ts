/**
 * What the service must never do, checked from outside against the built CLI: write outside the
 * machines directory, pass its own environment to a hook, hand a config value to a shell, or listen
 * beyond loopback unless told to.
 */
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCli, snapshotTree, startControllerProcess } from "../helpers/cli-process.js";
import { machineToml, writeHook, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";

let root: string;
let machines: string;
let hooks: string;
let config: string;

beforeEach(async () => {
  root = await makeTempDir("security");
  machines = path.join(root, "machines");
  hooks = path.join(root, "hooks");
  config = path.join(root, "controller.toml");
  await writeFile(config, "# defaults\n");
  await mkdir(machines);
  await mkdir(hooks);
});
afterEach(() => removeTempDir(root));

/** The metrics address when none is configured. */
const DEFAULT_LISTEN = { host: "127.0.0.1", port: 9464 };

/** Whether nothing listens on `address` right now (tried by listening on it for a moment). */
async function portIsFree({ host, port }: { host: string; port: number }): Promise<boolean> {
  const probe = createServer();
  const free = await new Promise<boolean>((resolve) => {
    probe.once("error", () => resolve(false));
    probe.listen(port, host, () => resolve(true));
  });
  if (free) await new Promise((resolve) => probe.close(resolve));
  return free;
}

/** A machine whose every free-text value is a shell injection attempt. */
function hostileMachine(name: string, canary: string): string {
  return machineToml(name, { ip: `10.0.0.1$(touch ${canary}-ip)`, extra: `kernel = "\`touch ${canary}-kernel\`"` }).replace(
    'vm_id = "0d6f2a8e-51c4-4f0b-9e3d-7a2b1c0e9f48"',
    `vm_id = "x; touch ${canary}-vmid; echo"`,
  );
}

describe("the service", () => {
  it("writes nothing outside the machines directory, passes none of its environment to hooks, and gives no value to a shell", async () => {
    const canary = path.join(root, "pwned");
    await writeMachine(machines, "web", hostileMachine("web", canary));
    const seen = path.join(machines, "web", "hook-saw");
    // The hook records what it got, inside the machine directory (its working directory).
    await writeHook(hooks, "10-record", `{ tr '\\0' '\\n' < /proc/$$/environ; echo "argv=$0|$1|$2"; cat; } > "$ARCBOX_MACHINE_DIR/hook-saw"`);
    const outside = path.join(root, "outside");
    await writeFile(outside, "untouched");
    const around = await snapshotTree(root);

    const secret = "s3cr3t-token-that-must-stay";
    const result = await runCli(["reconcile", "--config", config, "-d", machines, "--hooks-dir", hooks, "-o", "json"], {
      ARCBOX_SECRET_TOKEN: secret,
      AWS_SECRET_ACCESS_KEY: secret,
      HOME: root,
    });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ recovered: 1 });

    // Outside the machines directory nothing changed: every path is as it was, nothing new.
    const after = await snapshotTree(root);
    for (const [file, before] of around) {
      if (!file.startsWith(`${machines}${path.sep}`) && file !== machines) expect(after.get(file), file).toBe(before);
    }
    const added = [...after.keys()].filter((file) => !around.has(file));
    expect(added.filter((file) => !file.startsWith(`${machines}${path.sep}`))).toEqual([]);

    // The hook saw the literal values, never ran them, and none of the controller's environment.
    const saw = await readFile(seen, "utf8");
    expect(saw).not.toContain(secret);
    expect(saw).toContain(`ARCBOX_VM_ID=x; touch ${canary}-vmid; echo`);
    expect(saw).toContain(`ARCBOX_MACHINE_IP=10.0.0.1$(touch ${canary}-ip)`);
    expect(saw).toContain(`"kernel":"\`touch ${canary}-kernel\`"`);
    const names = saw.split("\n").filter((line) => /^[A-Z_]+=/.test(line)).map((line) => line.split("=")[0]);
    expect(names.sort()).toEqual(["ARCBOX_CONFIG", "ARCBOX_HOOK_ACTION", "ARCBOX_MACHINE", "ARCBOX_MACHINE_DIR", "ARCBOX_MACHINE_IP", "ARCBOX_VM_ID", "PATH"]);
    expect((await readdir(root)).filter((entry) => entry.startsWith("pwned"))).toEqual([]);
  });

  it("listens on loopback by default", async () => {
    const args = ["--config", config, "--machines-dir", machines, "--hooks-dir", hooks];
    if (!(await portIsFree(DEFAULT_LISTEN))) {
      // Another process (the demo of `npm start`, an exporter) holds the default port: the refusal
      // must then name it, which shows the same default.
      const run = await runCli(["run", ...args]);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(`"${DEFAULT_LISTEN.host}:${DEFAULT_LISTEN.port}": EADDRINUSE`);
      return;
    }
    const service = await startControllerProcess(args);
    try {
      expect(service.address).toBe("127.0.0.1:9464");
      await waitFor(async () => (await fetch(`http://${service.address}/healthz`)).ok, "the service to answer");
    } finally {
      expect(await service.stop()).toBe(0);
    }
  });

  it("refuses to start when its listen address is taken, naming the address, and touches no machine", async () => {
    await writeMachine(machines, "web", machineToml("web", { state: "running" }));
    const before = await snapshotTree(machines);
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    const { port } = holder.address() as AddressInfo;
    try {
      const run = await runCli(["run", "--config", config, "--machines-dir", machines, "--hooks-dir", hooks, "--liveness", "none", "--listen", `127.0.0.1:${port}`]);
      expect(run.code).toBe(2);
      expect(run.stderr).toBe(`arcbox-controller: cannot listen on metrics address "127.0.0.1:${port}": EADDRINUSE (another process uses this port; choose another listen address)\n`);
      // The machines are untouched; the instance lock, taken before listening, is left released and empty.
      const after = await snapshotTree(machines);
      const lock = path.join(machines, ".arcbox-controller.lock");
      expect(await readFile(lock, "utf8")).toBe("");
      after.delete(lock);
      expect(after).toEqual(before);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });
});
