// The Kubernetes manifests in deploy/: every document is checked against the
// real Kubernetes (and prometheus-operator) schemas, twice: the models' JSON
// schema validation (required fields, types, enums, formats) and a TypeScript
// type check of each document against the models' interfaces, which rejects
// fields that do not exist (a misspelt `hostPid` or `readonly` is ignored by the
// JSON schemas and by a lenient apply). Then the properties the sensor's
// security and operation depend on are asserted, and the sensor config and
// policy in the ConfigMap go through driftwatch's own validation.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { ResourceQuota } from 'kubernetes-models/v1/ResourceQuota';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { envName, parseConfigFile, resolveConfig, type SensorConfig } from '../../src/config.js';
import { parsePolicy } from '../../src/policy/policy-file.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const deployDir = join(repoRoot, 'deploy');

/** apiVersion/kind → the model that validates it and the interface the type check uses. */
const MODELS: Record<string, { model: { new (data: never): { validate(): void } }; module: string; iface: string }> = {
  'v1/Namespace': { model: Namespace, module: 'kubernetes-models/v1/Namespace', iface: 'INamespace' },
  'v1/ServiceAccount': { model: ServiceAccount, module: 'kubernetes-models/v1/ServiceAccount', iface: 'IServiceAccount' },
  'v1/ConfigMap': { model: ConfigMap, module: 'kubernetes-models/v1/ConfigMap', iface: 'IConfigMap' },
  'v1/Service': { model: Service, module: 'kubernetes-models/v1/Service', iface: 'IService' },
  'v1/PersistentVolumeClaim': { model: PersistentVolumeClaim, module: 'kubernetes-models/v1/PersistentVolumeClaim', iface: 'IPersistentVolumeClaim' },
  'v1/ResourceQuota': { model: ResourceQuota, module: 'kubernetes-models/v1/ResourceQuota', iface: 'IResourceQuota' },
  'apps/v1/DaemonSet': { model: DaemonSet, module: 'kubernetes-models/apps/v1/DaemonSet', iface: 'IDaemonSet' },
  'apps/v1/Deployment': { model: Deployment, module: 'kubernetes-models/apps/v1/Deployment', iface: 'IDeployment' },
  'policy/v1/PodDisruptionBudget': { model: PodDisruptionBudget, module: 'kubernetes-models/policy/v1/PodDisruptionBudget', iface: 'IPodDisruptionBudget' },
  'networking.k8s.io/v1/NetworkPolicy': { model: NetworkPolicy, module: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy', iface: 'INetworkPolicy' },
  'monitoring.coreos.com/v1/ServiceMonitor': {
    model: ServiceMonitor,
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
    iface: 'IServiceMonitor',
  },
};

// Loose views of the documents, for the property checks below.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = Record<string, any>;
interface Doc {
  where: string;
  obj: Obj;
}

// deploy/postgres/ is an alternative to deploy/30-backend.yaml (PostgreSQL
// mode with replicas), checked on its own below.
const alternativeDirs = new Set([join(deployDir, 'postgres')]);

function yamlFiles(dir: string, skip = alternativeDirs): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) return skip.has(p) ? [] : yamlFiles(p, skip);
      return /\.ya?ml$/.test(name) ? [p] : [];
    });
}

function loadDocs(dir = deployDir): Doc[] {
  const docs: Doc[] = [];
  for (const file of yamlFiles(dir)) {
    const rel = relative(repoRoot, file);
    parseAllDocuments(readFileSync(file, 'utf8')).forEach((d, i) => {
      assert.deepEqual(d.errors.map((e) => e.message), [], `${rel} document ${i + 1}: YAML errors`);
      const obj = d.toJS({ maxAliasCount: -1 }) as unknown;
      if (obj === null || obj === undefined) return; // an empty document (a trailing ---)
      assert.ok(typeof obj === 'object' && !Array.isArray(obj), `${rel} document ${i + 1}: not a mapping`);
      const o = obj as Obj;
      docs.push({ where: `${rel} #${i + 1} ${o['kind']}/${o['metadata']?.['name']}`, obj: o });
    });
  }
  return docs;
}

const docs = loadDocs();
const keyOf = (o: Obj) => `${o['apiVersion']}/${o['kind']}`;

/** Validates with the model's JSON schema; throws for a kind the table does not know. */
function schemaValidate(o: Obj): void {
  const entry = MODELS[keyOf(o)];
  if (!entry) throw new Error(`no schema for ${keyOf(o)}: add its model to MODELS`);
  new entry.model(o as never).validate();
}

/** Type-checks each object against its model interface; returns the diagnostics per object. */
function typeCheck(objs: Obj[]): string[][] {
  const file = join(deployDir, '__manifests_typecheck__.ts');
  const imports = new Set<string>();
  const decls = objs.map((o, i) => {
    const entry = MODELS[keyOf(o)];
    if (!entry) throw new Error(`no schema for ${keyOf(o)}`);
    imports.add(`import type { ${entry.iface} } from '${entry.module}';`);
    return `export const doc${i}: ${entry.iface} = ${JSON.stringify(o, null, 1)};`;
  });
  const header = [...imports].join('\n') + '\n';
  const source = header + decls.join('\n') + '\n';
  // Line where each declaration starts, to attribute diagnostics.
  const starts: number[] = [];
  let line = header.split('\n').length - 1;
  for (const d of decls) {
    starts.push(line);
    line += d.split('\n').length;
  }
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.fileExists = (f) => f === file || fileExists.call(host, f);
  host.readFile = (f) => (f === file ? source : readFile.call(host, f));
  host.getSourceFile = (f, lang, ...rest) => (f === file ? ts.createSourceFile(f, source, lang) : getSourceFile.call(host, f, lang, ...rest));
  const program = ts.createProgram({ rootNames: [file], options, host });
  const out: string[][] = objs.map(() => []);
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (d.file?.fileName !== file || d.start === undefined) {
      throw new Error(`type check setup failed: ${text}`);
    }
    const l = d.file.getLineAndCharacterOfPosition(d.start).line;
    let idx = starts.findIndex((s, i) => l >= s && (i + 1 === starts.length || l < starts[i + 1]!));
    if (idx < 0) throw new Error(`type check: ${text}`);
    out[idx]!.push(text.split('\n')[0]!);
  }
  return out;
}

const all = (kind: string) => docs.filter((d) => d.obj['kind'] === kind).map((d) => d.obj);
const one = (kind: string, component?: string): Obj => {
  const found = all(kind).filter((o) => !component || o['metadata']?.['labels']?.['app.kubernetes.io/component'] === component);
  assert.equal(found.length, 1, `expected one ${kind}${component ? ` (${component})` : ''}, found ${found.length}`);
  return found[0]!;
};
const workloads = () => [...all('DaemonSet'), ...all('Deployment')];
const containersOf = (w: Obj): Obj[] => [...(w['spec']['template']['spec']['initContainers'] ?? []), ...w['spec']['template']['spec']['containers']];
const portNumber = (c: Obj, port: number | string): number => {
  if (typeof port === 'number') return port;
  const p = (c['ports'] ?? []).find((x: Obj) => x['name'] === port);
  assert.ok(p, `container ${c['name']} has no port named ${port}`);
  return p['containerPort'];
};
const hostPort = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
const secretEnv = (c: Obj, name: string) => (c['env'] ?? []).find((e: Obj) => e['name'] === name)?.['valueFrom']?.['secretKeyRef'];

test('deploy: the manifests are there, and every document is a known kind that passes its schema', () => {
  assert.ok(docs.length >= 8, `only ${docs.length} documents in deploy/`);
  for (const d of docs) {
    assert.ok(MODELS[keyOf(d.obj)], `${d.where}: no schema for ${keyOf(d.obj)} (unknown kinds fail; add the model to MODELS)`);
    assert.doesNotThrow(() => schemaValidate(d.obj), (e: unknown) => `${d.where}: ${(e as Error).message}`);
    assert.ok(d.obj['metadata']?.['name'], `${d.where}: no metadata.name`);
    if (d.obj['kind'] !== 'Namespace') assert.equal(d.obj['metadata']['namespace'], 'driftwatch', `${d.where}: namespace`);
  }
  const names = docs.map((d) => `${d.obj['kind']}/${d.obj['metadata']['name']}`);
  assert.equal(new Set(names).size, names.length, `duplicate objects: ${names}`);
});

test('deploy: no document has a field the Kubernetes types do not know, and broken documents are caught', () => {
  const ds = structuredClone(one('DaemonSet'));
  const typo = structuredClone(ds);
  typo['spec']['template']['spec']['hostPid'] = true; // a misspelt field
  const wrongType = structuredClone(ds);
  wrongType['spec']['template']['spec']['containers'][0]['securityContext']['privileged'] = 'false';
  const mountTypo = structuredClone(ds);
  mountTypo['spec']['template']['spec']['containers'][0]['volumeMounts'][0]['readonly'] = true;
  const diags = typeCheck([...docs.map((d) => d.obj), typo, wrongType, mountTypo]);
  docs.forEach((d, i) => assert.deepEqual(diags[i], [], `${d.where}: ${diags[i]!.join('; ')}`));
  const [dTypo, dWrong, dMount] = diags.slice(docs.length);
  assert.match(dTypo!.join('\n'), /hostPid/, 'a misspelt pod field must be rejected');
  assert.match(dWrong!.join('\n'), /string.*boolean|boolean/, 'a string for a boolean must be rejected');
  assert.match(dMount!.join('\n'), /readonly/, 'a misspelt volumeMount field must be rejected');
  // The JSON schemas catch wrong types and missing required fields themselves.
  assert.throws(() => schemaValidate(wrongType));
  const noSelector = structuredClone(ds);
  delete noSelector['spec']['selector'];
  assert.throws(() => schemaValidate(noSelector));
  assert.throws(() => schemaValidate({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } }), /no schema for v1\/Pod/);
});

test('deploy: workloads select their own pods, run one image, and take no API token', () => {
  const images = new Set<string>();
  for (const w of workloads()) {
    const name = w['metadata']['name'];
    const labels = w['spec']['template']['metadata']['labels'];
    for (const [k, v] of Object.entries(w['spec']['selector']['matchLabels'] as Record<string, string>)) {
      assert.equal(labels[k], v, `${name}: selector ${k}=${v} does not match the pod template`);
    }
    const pod = w['spec']['template']['spec'];
    assert.equal(pod['automountServiceAccountToken'], false, `${name}: automountServiceAccountToken`);
    for (const c of containersOf(w)) images.add(c['image']);
  }
  assert.equal(images.size, 1, `workloads use different images: ${[...images].join(', ')}`);
  const image = [...images][0]!;
  assert.match(image, /^[^:@]+(:[\w.-]+)$/, 'image has an explicit tag');
  for (const sa of all('ServiceAccount')) assert.equal(sa['automountServiceAccountToken'], false);
  // No secret value is shipped: the token is created by the operator.
  assert.deepEqual(all('Secret'), []);
});

test('deploy: the sensor DaemonSet has the least privilege that works', () => {
  const ds = one('DaemonSet', 'sensor');
  const pod = ds['spec']['template']['spec'];
  assert.equal(pod['hostPID'], true);
  assert.notEqual(pod['hostNetwork'], true);
  assert.notEqual(pod['hostIPC'], true);
  assert.equal(pod['priorityClassName'], 'system-node-critical');
  assert.ok((pod['tolerations'] ?? []).some((t: Obj) => t['operator'] === 'Exists' && !t['key'] && !t['effect']), 'tolerates every taint');
  assert.equal(ds['spec']['updateStrategy']['type'], 'RollingUpdate');
  assert.ok(ds['spec']['updateStrategy']['rollingUpdate']['maxUnavailable'] !== undefined, 'maxUnavailable');

  for (const w of workloads()) {
    for (const c of containersOf(w)) {
      const sc = c['securityContext'] ?? {};
      const where = `${w['metadata']['name']}/${c['name']}`;
      assert.notEqual(sc['privileged'], true, `${where}: privileged`);
      assert.ok(sc['capabilities']?.['drop']?.includes('ALL'), `${where}: capabilities.drop ALL`);
      assert.equal(sc['readOnlyRootFilesystem'], true, `${where}: readOnlyRootFilesystem`);
      assert.ok(c['resources']?.['limits']?.['memory'], `${where}: memory limit`);
      // The API refuses allowPrivilegeEscalation: false together with SYS_ADMIN.
      if ((sc['capabilities']?.['add'] ?? []).includes('SYS_ADMIN')) assert.notEqual(sc['allowPrivilegeEscalation'], false, where);
    }
  }
  const [sensor] = ds['spec']['template']['spec']['containers'];
  assert.deepEqual([...sensor['securityContext']['capabilities']['add']].sort(), ['BPF', 'DAC_READ_SEARCH', 'PERFMON', 'SYS_PTRACE', 'SYS_RESOURCE']);
  assert.equal(sensor['securityContext']['allowPrivilegeEscalation'], false);
  assert.equal(sensor['securityContext']['privileged'], false);
  const backend = one('Deployment', 'backend');
  for (const c of containersOf(backend)) assert.equal(c['securityContext']['capabilities']['add'], undefined, 'the backend adds no capability');
  assert.equal(backend['spec']['template']['spec']['securityContext']['runAsNonRoot'], true);
});

/** The sensor config and policy as mounted, after driftwatch's own validation. */
function sensorConfig(): { cfg: SensorConfig; fileCfg: Partial<SensorConfig>; container: Obj; pod: Obj; policyText: string } {
  const ds = one('DaemonSet', 'sensor');
  const pod = ds['spec']['template']['spec'];
  const container = pod['containers'][0];
  const args: string[] = container['args'];
  assert.equal(args[0], 'run');
  const configPath = args[args.indexOf('--config') + 1];
  assert.ok(args.includes('--config') && configPath, 'the sensor gets --config <file>');
  // Find the ConfigMap volume the file is in.
  const file = (path: string): string => {
    const mount = (container['volumeMounts'] as Obj[]).find((m) => path.startsWith(m['mountPath'] + '/'));
    assert.ok(mount, `${path} is not under a volume mount`);
    const vol = (pod['volumes'] as Obj[]).find((v) => v['name'] === mount['name']);
    assert.ok(vol?.['configMap'], `${path}: its volume is not a ConfigMap`);
    const cm = all('ConfigMap').find((c) => c['metadata']['name'] === vol['configMap']['name']);
    assert.ok(cm, `ConfigMap ${vol['configMap']['name']} is not in deploy/`);
    const key = posix.relative(mount['mountPath'], path);
    assert.equal(typeof cm['data']?.[key], 'string', `ConfigMap ${cm['metadata']['name']} has no key ${key}`);
    return cm['data'][key];
  };
  const text = file(configPath);
  const fileCfg = parseConfigFile(text, configPath);
  const dir = mkdtempSync(join(tmpdir(), 'dw-deploy-'));
  try {
    const local = join(dir, 'config.yaml');
    writeFileSync(local, text);
    // The environment the pod gives (secret values are stand-ins).
    const env: Record<string, string> = {};
    for (const e of container['env'] ?? []) env[e['name']] = e['value'] ?? 'from-secret';
    const cfg = resolveConfig({ config: local }, env);
    assert.ok(cfg.policy, 'the config names a policy file');
    return { cfg, fileCfg, container, pod, policyText: file(cfg.policy) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('deploy: the ConfigMap passes driftwatch config and policy validation', () => {
  const { cfg, fileCfg, policyText } = sensorConfig();
  assert.equal(fileCfg.token, undefined, 'no token in the ConfigMap');
  assert.equal(cfg.token, 'from-secret');
  const policy = parsePolicy(policyText, 'policy.yaml');
  assert.ok(policy.dedupWindowMs >= 0);
});

test('deploy: probes, metrics Service and ServiceMonitor use the port of metricsAddress', () => {
  const { cfg, container } = sensorConfig();
  const port = hostPort(cfg.metricsAddress);
  assert.match(cfg.metricsAddress, /^0\.0\.0\.0:|^\[::\]:/, 'metrics must listen beyond loopback for probes and scrapes');
  const probe = (p: Obj | undefined, path: string, what: string) => {
    assert.ok(p?.['httpGet'], `${what} probe uses httpGet`);
    assert.equal(p['httpGet']['path'], path, `${what} probe path`);
    assert.equal(portNumber(container, p['httpGet']['port']), port, `${what} probe port`);
  };
  probe(container['livenessProbe'], '/healthz', 'liveness');
  probe(container['readinessProbe'], '/readyz', 'readiness');
  if (container['startupProbe']) probe(container['startupProbe'], '/healthz', 'startup');

  const ds = one('DaemonSet', 'sensor');
  const podLabels = ds['spec']['template']['metadata']['labels'];
  const svc = all('Service').find((s) => Object.entries(s['spec']['selector'] ?? {}).every(([k, v]) => podLabels[k] === v));
  assert.ok(svc, 'a Service selects the sensor pods');
  assert.equal(svc['spec']['clusterIP'], 'None', 'headless: one endpoint per node');
  const svcPort = (svc['spec']['ports'] as Obj[]).find((p) => portNumber(container, p['targetPort'] ?? p['port']) === port);
  assert.ok(svcPort, 'the Service exposes the metrics port');
  const sm = one('ServiceMonitor');
  for (const [k, v] of Object.entries(sm['spec']['selector']['matchLabels'] as Record<string, string>)) {
    assert.equal(svc['metadata']['labels'][k], v, `ServiceMonitor selector ${k}`);
  }
  assert.ok((sm['spec']['endpoints'] as Obj[]).some((e) => e['port'] === svcPort['name'] && (e['path'] ?? '/metrics') === '/metrics'));
});

test('deploy: hostPath mounts are read-only except the data dir, at the host path', () => {
  const { cfg, container, pod } = sensorConfig();
  const volumes = new Map((pod['volumes'] as Obj[]).map((v) => [v['name'], v]));
  let dataMounts = 0;
  for (const m of container['volumeMounts'] as Obj[]) {
    const hp = volumes.get(m['name'])?.['hostPath'];
    if (!hp) continue;
    // The sensor reads host paths (overlay dirs from mountinfo) as they are.
    assert.equal(m['mountPath'], hp['path'], `${m['name']}: mounted at its host path`);
    assert.ok(!m['subPath'], `${m['name']}: no subPath`);
    if (m['mountPath'] === cfg.dataDir) {
      dataMounts++;
      assert.equal(hp['type'], 'DirectoryOrCreate');
      assert.notEqual(m['readOnly'], true, 'the data dir is writable');
    } else {
      assert.equal(m['readOnly'], true, `${m['name']} (${hp['path']}) must be readOnly`);
      assert.notEqual(m['mountPropagation'], 'Bidirectional', `${m['name']}: no Bidirectional propagation`);
    }
  }
  assert.equal(dataMounts, 1, `dataDir ${cfg.dataDir} is a hostPath mount`);
  const paths = [...volumes.values()].filter((v) => v['hostPath']).map((v) => v['hostPath']['path']);
  assert.ok(paths.includes('/sys/kernel/btf'), 'BTF is mounted');
  assert.ok(!paths.includes('/') && !paths.includes('/proc') && !paths.includes('/sys'), 'no broad host mounts');
});

test('deploy: the sensor exports to the backend Service with the token from the same Secret', () => {
  const { cfg, container } = sensorConfig();
  assert.ok(cfg.backend, 'the sensor exports to a backend');
  const [host, portText] = [cfg.backend.slice(0, cfg.backend.lastIndexOf(':')), cfg.backend.slice(cfg.backend.lastIndexOf(':') + 1)];
  const [svcName, ns] = host.split('.');
  const svc = all('Service').find((s) => s['metadata']['name'] === svcName);
  assert.ok(svc, `backend ${cfg.backend}: no Service ${svcName}`);
  assert.equal(ns, svc['metadata']['namespace']);
  const svcPort = (svc['spec']['ports'] as Obj[]).find((p) => p['port'] === Number(portText));
  assert.ok(svcPort, `Service ${svcName} has no port ${portText}`);

  const backend = one('Deployment', 'backend');
  const podLabels = backend['spec']['template']['metadata']['labels'];
  assert.ok(Object.entries(svc['spec']['selector'] as Record<string, string>).every(([k, v]) => podLabels[k] === v), 'the Service selects the backend');
  const bc = backend['spec']['template']['spec']['containers'][0];
  const bargs: string[] = bc['args'];
  assert.equal(bargs[0], 'backend');
  const listen = bargs[bargs.indexOf('--listen') + 1]!;
  assert.match(listen, /^0\.0\.0\.0:\d+$/);
  assert.equal(portNumber(bc, svcPort['targetPort'] ?? svcPort['port']), hostPort(listen), 'Service targetPort is the --listen port');
  assert.ok(!bargs.includes('--token'), 'no token in the arguments');
  for (const p of [bc['readinessProbe'], bc['livenessProbe']]) {
    assert.equal(p?.['grpc']?.['port'], hostPort(listen), 'backend probes use grpc.health.v1 on the listen port');
  }

  const tokenEnv = envName('token');
  assert.equal(tokenEnv, 'DRIFTWATCH_TOKEN');
  const s = secretEnv(container, tokenEnv);
  const b = secretEnv(bc, tokenEnv);
  assert.ok(s && b, 'both take DRIFTWATCH_TOKEN from a Secret');
  assert.deepEqual({ name: s['name'], key: s['key'] }, { name: b['name'], key: b['key'] });
});

test('deploy: PostgreSQL mode runs replicas of the same backend, with the database URL and token from Secrets', () => {
  const pgDocs = loadDocs(join(deployDir, 'postgres'));
  assert.ok(pgDocs.length >= 2, 'deploy/postgres/ has the backend and its disruption budget');
  for (const d of pgDocs) {
    assert.doesNotThrow(() => schemaValidate(d.obj), (e: unknown) => `${d.where}: ${(e as Error).message}`);
    assert.equal(d.obj['metadata']['namespace'], 'driftwatch');
  }
  const diags = typeCheck(pgDocs.map((d) => d.obj));
  pgDocs.forEach((d, i) => assert.deepEqual(diags[i], [], `${d.where}: ${diags[i]!.join('; ')}`));
  const pgBackend = pgDocs.find((d) => d.obj['kind'] === 'Deployment')!.obj;
  const sqliteBackend = one('Deployment', 'backend');
  // it replaces the SQLite Deployment in place and is selected by the same Service
  assert.equal(pgBackend['metadata']['name'], sqliteBackend['metadata']['name']);
  assert.deepEqual(pgBackend['spec']['selector'], sqliteBackend['spec']['selector']);
  assert.ok(pgBackend['spec']['replicas'] >= 2, 'replicas');
  assert.equal(pgBackend['spec']['strategy']['type'], 'RollingUpdate');
  const pod = pgBackend['spec']['template']['spec'];
  assert.equal(pod['automountServiceAccountToken'], false);
  assert.equal(pod['volumes'], undefined, 'no volume: the state is in PostgreSQL');
  const c = pod['containers'][0];
  assert.equal(c['image'], sqliteBackend['spec']['template']['spec']['containers'][0]['image']);
  assert.ok(!(c['args'] as string[]).includes('--db') && !(c['args'] as string[]).includes('--token'), 'no URL or token in the arguments');
  assert.deepEqual(secretEnv(c, 'DRIFTWATCH_DB'), { name: 'driftwatch-postgres', key: 'url' });
  assert.deepEqual(secretEnv(c, 'DRIFTWATCH_TOKEN'), secretEnv(sqliteBackend['spec']['template']['spec']['containers'][0], 'DRIFTWATCH_TOKEN'));
  assert.equal(c['securityContext']['readOnlyRootFilesystem'], true);
  const pdb = pgDocs.find((d) => d.obj['kind'] === 'PodDisruptionBudget')!.obj;
  assert.deepEqual(pdb['spec']['selector'], pgBackend['spec']['selector']);
  assert.ok(pdb['spec']['minAvailable'] < pgBackend['spec']['replicas'], 'a node drain can proceed');
});
