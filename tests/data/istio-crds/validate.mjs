// Validates Kubernetes objects against the Istio CRD schemas compiled into @kubernetes-models/istio (npm; its
// validators are generated from Istio's crd-all.gen.yaml, see README.md here).
//
//   node validate.mjs <dir with node_modules/@kubernetes-models/istio>  < [obj, obj, ...]  > [errors|null, ...]
//
// For each object: null when it validates, else the list of "instancePath: message (params)" strings.
// An apiVersion/kind the package does not have is an error, never a pass.
import { readFileSync, existsSync } from "node:fs";
import { pathToFileURL } from "node:url";

const dir = process.argv[2];
const pkg = `${dir}/node_modules/@kubernetes-models/istio`;
if (!existsSync(`${pkg}/package.json`)) {
  console.error(`validate.mjs: ${pkg} is not installed (make istio-deps)`);
  process.exit(2);
}
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const obj of objects) {
  const [group, version] = String(obj.apiVersion ?? "").split("/");
  const file = `${pkg}/${group}/${version}/${obj.kind}.js`;
  if (!group || !version || !/^[A-Za-z]+$/.test(String(obj.kind)) || !existsSync(file)) {
    results.push([`no schema for ${obj.apiVersion} ${obj.kind}`]);
    continue;
  }
  const Model = (await import(pathToFileURL(file)))[obj.kind];
  try {
    new Model(obj).validate();
    results.push(null);
  } catch (e) {
    const errors = e.errors ?? [];
    results.push(errors.length
      ? errors.map((x) => `${x.instancePath || "/"}: ${x.message ?? x.keyword} ${JSON.stringify(x.params ?? {})}`)
      : [String(e.message ?? e)]);
  }
}
process.stdout.write(JSON.stringify(results));
