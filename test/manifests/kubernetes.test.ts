import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseToml } from "smol-toml";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { z } from "zod";
import { loadConfig, parseDuration, type ConfigFlags } from "../../src/controller/config.js";
import { parseListenAddress } from "../../src/metrics/listen-address.js";

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
            volumeMounts: z.array(z.object({ name: z.string(), mountPath: z.string(), readOnly: z.boolean().optional() })),
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

/** `run` options of DESIGN §5, mapped to the config loader's flag names. */
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
  const pod = daemonSet.spec.template.spec;
  const container = pod.containers[0];
  if (container === undefined) throw new Error("daemonset.yaml: the DaemonSet has no container");
  return { documents, kinds, daemonSet, podMonitor, pod, container };
}

/** The `run` arguments as flag → value; fails on a flag DESIGN §5 does not define for `run`. */
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
    const flags: ConfigFlags = {};
    for (const [flag, value] of runOptions(container.args)) flags[RUN_FLAGS[flag] as keyof ConfigFlags] = value;
    const config = await loadConfig(flags, {});
    expect(config.machinesDir).toBe("/var/lib/arcbox/machines");
    expect(config.liveness).toBe("pidfile");
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

  it("uses the host pid namespace, a minimal security context and a grace period above shutdown_timeout", async () => {
    const { pod, container } = await loadManifests();
    expect(pod.hostPID, "pidfile liveness needs host pids").toBe(true);
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
