// The discovery file read as the CLI reads it: where it is, what counts as one, whose pid is
// alive, and the identity check that must pass before the token goes anywhere.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { discoveryFile, identityProblem, pidAlive, readDiscovery, stateDir } from "../src/client/discovery";
import { tmpDir } from "./helpers";

test("the home is the setting, else TIERD_HOME, else the XDG state directory", () => {
  const real = tmpDir();
  const link = path.join(tmpDir(), "link");
  fs.symlinkSync(real, link);
  assert.equal(stateDir({ TIERD_HOME: link, HOME: "/home/u" }), fs.realpathSync(real)); // resolved
  assert.equal(stateDir({ TIERD_HOME: "/x/home", HOME: "/home/u" }, " /y/set "), "/y/set");
  assert.equal(stateDir({ HOME: "/home/u" }, "~/th"), "/home/u/th");
  assert.equal(stateDir({ HOME: "/home/u" }), "/home/u/.local/state/tierd");
  assert.equal(stateDir({ HOME: "/home/u", XDG_STATE_HOME: "/xdg/state" }), "/xdg/state/tierd");
  // A relative XDG path is invalid and ignored, as the spec (and the CLI) say.
  assert.equal(stateDir({ HOME: "/home/u", XDG_STATE_HOME: "rel/state" }), "/home/u/.local/state/tierd");
  assert.equal(discoveryFile({ TIERD_HOME: "/x/h", HOME: "/h" }), "/x/h/daemon.json");
});

test("daemon.json: what the CLI takes, and what it refuses", () => {
  const dir = tmpDir();
  const file = path.join(dir, "daemon.json");
  const write = (doc: unknown): void => fs.writeFileSync(file, typeof doc === "string" ? doc : JSON.stringify(doc));
  const base = { url: "http://127.0.0.1:8737", token: "secret", pid: 4242, version: "0.1.0", instance_id: "abc" };

  write(base);
  assert.deepEqual(readDiscovery(file), { url: base.url, token: "secret", pid: 4242, version: "0.1.0", instanceId: "abc" });
  write({ ...base, pid: "4242" });
  assert.equal(readDiscovery(file)?.pid, 4242); // int("4242")
  write({ ...base, instance_id: "" });
  assert.equal(readDiscovery(file)?.instanceId, null); // an older tierd's: cannot be verified
  write({ url: base.url, token: "x", pid: 7 });
  assert.equal(readDiscovery(file)?.version, "");
  for (const bad of [
    { ...base, pid: 0 },
    { ...base, pid: -3 },
    { ...base, pid: 2 ** 31 },
    { ...base, pid: "many" },
    { ...base, pid: null },
    { url: base.url, pid: 5 }, // no token
    { token: "x", pid: 5 }, // no url
    [1, 2],
    "not json {",
  ]) {
    write(bad);
    assert.equal(readDiscovery(file), null, JSON.stringify(bad));
  }
  assert.equal(readDiscovery(path.join(dir, "missing.json")), null);
});

test("a pid is alive while its process runs, and not once it has exited", () => {
  assert.equal(pidAlive(process.pid), true);
  const done = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf-8" });
  const gone = Number(done.stdout.trim());
  assert.ok(gone > 0);
  assert.equal(pidAlive(gone), false);
});

test("the identity check: only the instance id daemon.json holds lets the token go", () => {
  const info = { url: "http://127.0.0.1:1", token: "t", pid: 1, version: "", instanceId: "f00d" };
  assert.equal(identityProblem(info, { ok: true, instance_id: "f00d" }), null);
  for (const health of [{ ok: true, instance_id: "beef" }, { ok: true }, { instance_id: "f00d0" }, null, "f00d", ["f00d"], { instance_id: 7 }]) {
    assert.match(String(identityProblem(info, health)), /is not the tierd daemon that wrote daemon\.json/, JSON.stringify(health));
  }
  assert.match(String(identityProblem({ ...info, instanceId: null }, { instance_id: "f00d" })), /no instance id/);
});
