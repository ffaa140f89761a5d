import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { z } from "zod";
import { loadConfig, parseDuration, type ConfigFlags } from "../../src/controller/config.js";
import { parseListenAddress } from "../../src/metrics/listen-address.js";
import { startControllerProcess } from "../helpers/cli-process.js";
import { startStandInDaemon } from "../helpers/daemon.js";
import { machineToml, writeMachine } from "../helpers/machines.js";
import { makeTempDir, removeTempDir, waitFor } from "../helpers/processes.js";
import { requireToolOrSkip } from "../helpers/prometheus.js";
import { parseExposition, valueOf } from "../metrics/exposition-parser.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const kubernetesDir = path.join(repoRoot, "manifests/kubernetes");

const labels = z.record(z.string(), z.string());
const metadata = z.object({ name: z.string(), namespace: z.string().optional(), labels: labels.optional() });
const httpProbe = z.object({ httpGet: z.object({ path: z.string(), port: z.union([z.string(), z.number()]) }) });
const quantity = z.union([z.string(), z.number()]);

const daemonSetSchema = z.object({
  kind: z.literal("DaemonSet"),
  metadata,
  spec: z.object({
    selector: z.object({ matchLabels: labels }),
    template: z.object({
      metadata: z.object({ labels }),
      spec: z.object({
        serviceAccountName: z.string(),
        hostPID: z.boolean().optional(),
        terminationGracePeriodSeconds: z.number(),
        containers: z.array(
          z.object({
            name: z.string(),
            image: z.string(),
            command: z.array(z.string()),
            args: z.array(z.string()),
            ports: z.array(z.object({ name: z.string(), containerPort: z.number() })),
            livenessProbe: httpProbe,
            readinessProbe: httpProbe,
            resources: z.object({
              requests: z.object({ cpu: quantity, memory: quantity }),
              limits: z.object({ cpu: quantity, memory: quantity }),
            }),
            securityContext: z.object({
              allowPrivilegeEscalation: z.literal(false),
              readOnlyRootFilesystem: z.literal(true),
              capabilities: z.object({ drop: z.array(z.string()), add: z.array(z.string()).optional() }),
            }),
            volumeMounts: z.array(
              z.object({
                name: z.string(),
                mountPath: z.string(),
                readOnly: z.boolean().optional(),
                mountPropagation: z.enum(["None", "HostToContainer", "Bidirectional"]).optional(),
              }),
            ),
          }),
        ),
        volumes: z.array(
          z.object({
            name: z.string(),
            hostPath: z.object({ path: z.string(), type: z.string() }).optional(),
            emptyDir: z.object({}).passthrough().optional(),
          }),
        ),
      }),
    }),
  }),
});

type PodSpec = z.infer<typeof daemonSetSchema>["spec"]["template"]["spec"];
type Container = PodSpec["containers"][number];

const podMonitorSchema = z.object({
  apiVersion: z.literal("monitoring.coreos.com/v1"),
  kind: z.literal("PodMonitor"),
  metadata,
  spec: z.object({
    jobLabel: z.string(),
    selector: z.object({ matchLabels: labels }),
    podMetricsEndpoints: z.array(z.object({ port: z.string(), path: z.string() })),
  }),
});

/** `run` options of docs/design.md#cli, mapped to the config loader's flag names. */
const RUN_FLAGS: Record<string, keyof ConfigFlags> = {
  "--config": "config",
  "-c": "config",
  "--machines-dir": "machinesDir",
  "-d": "machinesDir",
  "--hooks-dir": "hooksDir",
  "--liveness": "liveness",
  "--listen": "listen",
  "--workers": "workers",
  "--log-level": "logLevel",
};

async function readDocuments(file: string): Promise<unknown[]> {
  const documents = parseAllDocuments(await readFile(path.join(kubernetesDir, file), "utf8"));
  return documents.map((document) => {
    expect(document.errors, `${file}: ${document.errors.join("; ")}`).toEqual([]);
    return document.toJS() as unknown;
  });
}

async function loadManifests() {
  const documents = await readDocuments("daemonset.yaml");
  const kinds = documents.map((document) => (document as { kind?: string }).kind);
  const daemonSet = daemonSetSchema.parse(documents.find((document) => (document as { kind?: string }).kind === "DaemonSet"));
  const [podMonitorDocument] = await readDocuments("podmonitor.yaml");
  const podMonitor = podMonitorSchema.parse(podMonitorDocument);
  const pod: PodSpec = daemonSet.spec.template.spec;
  const container: Container | undefined = pod.containers[0];
  if (container === undefined) throw new Error("daemonset.yaml: the DaemonSet has no container");
  return { documents, kinds, daemonSet, podMonitor, pod, container };
}

/** The controller configuration the container's `run` arguments give. */
async function containerConfig(args: string[]) {
  const flags: ConfigFlags = {};
  for (const [flag, value] of runOptions(args)) (flags as Record<string, string>)[RUN_FLAGS[flag]!] = value;
  return loadConfig(flags, { env: {} });
}

/**
 * Where `containerPath` comes from on the node, as the kubelet mounts the pod's volumes: the
 * deepest mount that contains it decides. Fails when no hostPath volume covers it.
 */
function hostSource(pod: PodSpec, container: Container, containerPath: string) {
  const covering = container.volumeMounts
    .filter((mount) => containerPath === mount.mountPath || containerPath.startsWith(`${mount.mountPath.replace(/\/$/, "")}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length);
  const mount = covering[0];
  expect(mount, `no volume is mounted over ${containerPath}`).toBeDefined();
  const volume = pod.volumes.find((candidate) => candidate.name === mount?.name);
  expect(volume?.hostPath, `${containerPath} is not on a hostPath volume`).toBeDefined();
  const rest = containerPath.slice((mount?.mountPath ?? "").length);
  return { mount: mount!, hostPath: `${volume?.hostPath?.path ?? ""}${rest}` };
}

/** The `run` arguments as flag → value; fails on a flag docs/design.md#cli does not define for `run`. */
function runOptions(args: string[]): Map<string, string> {
  expect(args[0], "the container must run the `run` command").toBe("run");
  const options = new Map<string, string>();
  for (let index = 1; index < args.length; index += 2) {
    const flag = args[index] as string;
    const value = args[index + 1];
    expect(Object.keys(RUN_FLAGS), `unknown option ${flag}`).toContain(flag);
    expect(value, `${flag} has no value`).toBeDefined();
    options.set(flag, value as string);
  }
  return options;
}

describe("manifests/kubernetes", () => {
  it("defines the namespace, a service account and the DaemonSet in arcbox-system", async () => {
    const { documents, kinds, daemonSet, pod } = await loadManifests();
    expect(kinds).toEqual(["Namespace", "ServiceAccount", "DaemonSet"]);
    const serviceAccount = metadata.parse((documents[1] as { metadata: unknown }).metadata);
    expect(serviceAccount.namespace).toBe("arcbox-system");
    expect(daemonSet.metadata.namespace).toBe("arcbox-system");
    expect(pod.serviceAccountName).toBe(serviceAccount.name);
    expect(daemonSet.spec.template.metadata.labels).toMatchObject(daemonSet.spec.selector.matchLabels);
  });

  it("runs with options the controller's config loader accepts", async () => {
    const { container } = await loadManifests();
    expect(container.command).toEqual(["arcbox-controller"]);
    const config = await containerConfig(container.args);
    expect(config.machinesDir).toBe("/var/lib/arcbox/machines");
    expect(config.liveness).toBe("daemon");
    expect(config.daemonLock).toBe("/var/lib/arcbox/run/daemon.lock");
  });

  it("shows the node's arcbox daemon lock at the same path, read-only, and its machines read-write", async () => {
    const { pod, container } = await loadManifests();
    const config = await containerConfig(container.args);
    const lock = hostSource(pod, container, config.daemonLock);
    expect(lock.hostPath, "the pod must probe the node's own lock").toBe(config.daemonLock);
    expect(lock.mount.readOnly, "the probe never writes: the data directory is mounted read-only").toBe(true);
    // A mount of run/ alone would keep a deleted directory if the daemon recreated it.
    expect(lock.mount.mountPath).toBe(path.dirname(path.dirname(config.daemonLock)));
    expect(lock.mount.mountPropagation).toBe("HostToContainer");
    const machines = hostSource(pod, container, path.join(config.machinesDir, "web/config.toml"));
    expect(machines.hostPath).toBe(path.join(config.machinesDir, "web/config.toml"));
    expect(machines.mount.readOnly ?? false).toBe(false);
  });

  it("mounts the host's machines directory read-write and its hooks directory read-only at the given paths", async () => {
    const { pod, container } = await loadManifests();
    const options = runOptions(container.args);
    const mountOf = (dir: string | undefined) => {
      const mount = container.volumeMounts.find((candidate) => candidate.mountPath === dir);
      expect(mount, `no volume is mounted at ${dir}`).toBeDefined();
      const volume = pod.volumes.find((candidate) => candidate.name === mount?.name);
      expect(volume?.hostPath, `${dir} is not a hostPath volume`).toBeDefined();
      return { mount, hostPath: volume?.hostPath };
    };
    const machines = mountOf(options.get("--machines-dir"));
    expect(machines.mount?.readOnly ?? false).toBe(false);
    expect(machines.hostPath).toEqual({ path: options.get("--machines-dir"), type: "DirectoryOrCreate" });
    const hooks = mountOf(options.get("--hooks-dir"));
    expect(hooks.mount?.readOnly).toBe(true);
    expect(hooks.hostPath?.path).toBe(options.get("--hooks-dir"));
  });

  it("listens on the pod IP at the port named metrics, which the probes and the PodMonitor use", async () => {
    const { container, podMonitor } = await loadManifests();
    const listen = parseListenAddress(runOptions(container.args).get("--listen") ?? "");
    expect(["0.0.0.0", "::"], "loopback is unreachable for probes and Prometheus").toContain(listen.host);
    const metricsPort = container.ports.find((port) => port.name === "metrics");
    expect(metricsPort?.containerPort).toBe(listen.port);
    expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "metrics" });
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "metrics" });
    expect(podMonitor.spec.podMetricsEndpoints).toEqual([expect.objectContaining({ port: "metrics", path: "/metrics" })]);
  });

  it("uses the host pid namespace only for pidfile liveness, a minimal security context and a grace period above shutdown_timeout", async () => {
    const { pod, container } = await loadManifests();
    const config = await containerConfig(container.args);
    expect(pod.hostPID ?? false, "host pids are needed by pidfile liveness, and only by it").toBe(config.liveness === "pidfile");
    expect(container.securityContext.capabilities.drop).toEqual(["ALL"]);
    expect(container.securityContext.capabilities.add).toBeUndefined();
    const example = parseToml(await readFile(path.join(repoRoot, "manifests/examples/controller.toml"), "utf8"));
    const shutdownMs = parseDuration(String(example.shutdown_timeout)) ?? Number.NaN;
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(shutdownMs + 5_000);
  });

  it("the PodMonitor selects the DaemonSet's pods and names their job as the alert rules expect", async () => {
    const { daemonSet, podMonitor } = await loadManifests();
    const podLabels = daemonSet.spec.template.metadata.labels;
    expect(podMonitor.metadata.namespace).toBe(daemonSet.metadata.namespace);
    expect(podLabels).toMatchObject(podMonitor.spec.selector.matchLabels);
    const scrape = z
      .object({ scrape_configs: z.array(z.object({ job_name: z.string() })) })
      .parse(parseYaml(await readFile(path.join(repoRoot, "manifests/prometheus/scrape.yml"), "utf8")));
    expect(podLabels[podMonitor.spec.jobLabel]).toBe(scrape.scrape_configs[0]?.job_name);
    expect(podLabels[podMonitor.spec.jobLabel]).toBe("arcbox-controller");
  });
});

describe("the DaemonSet's volumes mounted as the kubelet mounts them", () => {
  /**
   * The pod's view is built in a new user and mount namespace (as a container runtime does with
   * bind mounts): a tmpfs over /var/lib, then every volume mounted under /var/lib bound from a
   * temp "node" directory, parents first, read-only where the manifest says so. The controller
   * runs there with the container's own arguments; the stand-in arcbox daemon runs outside it, on
   * the node's side of the bind mounts.
   */
  requireToolOrSkip(
    "unshare",
    "the pod's controller leaves machines alone while the node's daemon holds its lock, and recovers them when it dies",
    async (unshare) => {
      const { pod, container } = await loadManifests();
      const config = await containerConfig(container.args);
      const node = await makeTempDir("k8s-node");
      expect(node.startsWith("/var/lib/"), "the temp directory must not lie under the /var/lib the test covers").toBe(false);
      const hooksDir = await makeTempDir("k8s-hooks");
      try {
        const mounts = container.volumeMounts
          .filter((mount) => mount.mountPath.startsWith("/var/lib/"))
          .sort((a, b) => a.mountPath.split("/").length - b.mountPath.split("/").length);
        const script = ["mount -t tmpfs -o mode=0755 tmpfs /var/lib"];
        for (const mount of mounts) {
          const source = `${node}${hostSource(pod, container, mount.mountPath).hostPath}`;
          await mkdir(source, { recursive: true }); // hostPath type DirectoryOrCreate
          script.push(`mkdir -p '${mount.mountPath}'`, `mount --bind ${mount.readOnly ? "-o ro " : ""}'${source}' '${mount.mountPath}'`);
        }
        script.push('exec "$0" "$@"');
        await writeMachine(`${node}${config.machinesDir}`, "web", machineToml("web"));
        const daemon = await startStandInDaemon(`${node}${config.daemonLock}`);

        // The container's arguments, but a free loopback port and an empty hooks directory of the test's own.
        const options = runOptions(container.args);
        options.set("--listen", "127.0.0.1:0");
        options.set("--hooks-dir", hooksDir);
        const controller = await startControllerProcess([...options].flat(), {
          wrapper: [unshare, "--user", "--map-root-user", "--mount", "sh", "-euc", script.join("\n")],
        });
        const hostConfig = `${node}${config.machinesDir}/web/config.toml`;
        try {
          const metrics = async () => parseExposition(await (await fetch(`http://${controller.address}/metrics`)).text());
          await waitFor(async () => {
            const scraped = await metrics();
            return valueOf(scraped, "arcbox_daemon_up") === 1 && valueOf(scraped, "arcbox_reconcile_total", { result: "success" }) >= 1;
          }, "web reconciled with the node's daemon seen as up");
          expect(await readFile(hostConfig, "utf8")).toContain('state = "running"');
          expect(await daemon.stillHoldsLock(), "the probe through the mount must not take the daemon's lock").toBe(true);

          await daemon.kill();
          await waitFor(async () => (await readFile(hostConfig, "utf8")).includes('state = "stopped"'), "web recovered on the node");
          // The log line follows the write, so it may land a moment later.
          const recovered = await waitFor(() => controller.logs.find((line) => line.msg === "machine recovered"), "the recovery log line");
          expect(String(recovered?.reason)).toContain("the arcbox daemon is not running");
        } finally {
          await daemon.kill();
          expect(await controller.stop(), controller.stderr()).toBe(0);
        }
      } finally {
        await removeTempDir(node);
        await removeTempDir(hooksDir);
      }
    },
  );
});
