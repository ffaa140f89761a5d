// The baselines of a /metrics scrape, as a child process serving plain node:http on 127.0.0.1:
//   /static       the given exposition bytes, rendered once before the first request (the physical
//                 limit of serving that family);
//   /prom-client  the same `arcbox_machine_state{machine,state}` series held in a plain prom-client
//                 Gauge and rendered by prom-client at each scrape (the peer).
//   node bench/lib/children/scrape-floor.mjs FAMILY_FILE
// Writes its `host:port` on stdout once it listens.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { Gauge, Registry } from "prom-client";

const family = readFileSync(process.argv[2]);
const registry = new Registry();
const gauge = new Gauge({ name: "arcbox_machine_state", help: "Current state of each machine.", labelNames: ["machine", "state"], registers: [registry] });
for (const [, machine, state, value] of family.toString().matchAll(/^arcbox_machine_state\{machine="([^"]*)",state="([^"]*)"\} (\S+)$/gm)) {
  gauge.set({ machine, state }, Number(value));
}

const server = createServer(async (req, res) => {
  if (req.url === "/static") {
    res.writeHead(200, { "Content-Type": registry.contentType, "Content-Length": family.length });
    res.end(family);
  } else if (req.url === "/prom-client") {
    const body = await registry.metrics();
    res.writeHead(200, { "Content-Type": registry.contentType });
    res.end(body);
  } else {
    res.writeHead(404).end();
  }
});
server.listen(0, "127.0.0.1", () => process.stdout.write(`127.0.0.1:${server.address().port}\n`));
