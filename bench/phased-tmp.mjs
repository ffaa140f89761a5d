import * as fs from "node:fs";
import { join } from "node:path";
import { parse } from "smol-toml";
import { promisify } from "node:util";
const fsyncA = promisify(fs.fsync);
const [dir, B] = [process.argv[2], Number(process.argv[3])];
const t0 = performance.now();
const names = fs.readdirSync(dir).filter((n) => !n.startsWith("."));
let rec = 0;
for (let i = 0; i < names.length; i += B) {
  const batch = [];
  for (const name of names.slice(i, i + B)) {
    const d = join(dir, name); const p = join(d, "config.toml");
    const text = fs.readFileSync(p, "utf8");
    if (parse(text).state !== "running") continue;
    const tmp = join(d, ".config.toml.ph-" + i);
    const fd = fs.openSync(tmp, "wx", 0o600);
    fs.writeSync(fd, text.replace(/^state = "running"$/m, 'state = "stopped"'));
    batch.push({ d, p, tmp, fd });
  }
  await Promise.all(batch.map((b) => fsyncA(b.fd)));
  for (const b of batch) { fs.closeSync(b.fd); fs.renameSync(b.tmp, b.p); b.dfd = fs.openSync(b.d, "r"); }
  await Promise.all(batch.map((b) => fsyncA(b.dfd)));
  for (const b of batch) fs.closeSync(b.dfd);
  rec += batch.length;
}
console.log(JSON.stringify({ B, rec, ms: Math.round(performance.now() - t0) }));
