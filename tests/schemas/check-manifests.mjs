// Checks the manifests `scopegate-broker render istio|envoy-gateway` prints against the published
// schemas, without a cluster: Kubernetes' own kinds (`kubernetes-models`), Istio's CRDs
// (`@kubernetes-models/istio`) and the Gateway API (`@kubernetes-models/gateway-api`) validate
// types, required fields and enums. Envoy Gateway's own kinds have no packaged schema: for them
// the fields its API reference marks required are checked here. A kind with no schema at all is
// an error. These packaged schemas do not refuse unknown fields.
// Usage: node check-manifests.mjs FILE... Prints one JSON line; exits 1 if any document fails.

import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import * as core from 'kubernetes-models/v1';
import * as apps from 'kubernetes-models/apps/v1';
import * as istioExtensions from '@kubernetes-models/istio/extensions.istio.io/v1alpha1';
import * as istioNetworking from '@kubernetes-models/istio/networking.istio.io/v1';
import * as istioNetworkingAlpha from '@kubernetes-models/istio/networking.istio.io/v1alpha3';
import * as istioSecurity from '@kubernetes-models/istio/security.istio.io/v1';
import * as istioTelemetry from '@kubernetes-models/istio/telemetry.istio.io/v1';
import * as gatewayApi from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';

const PACKAGED = {
  v1: core,
  'apps/v1': apps,
  'extensions.istio.io/v1alpha1': istioExtensions,
  'networking.istio.io/v1': istioNetworking,
  'networking.istio.io/v1alpha3': istioNetworkingAlpha,
  'security.istio.io/v1': istioSecurity,
  'telemetry.istio.io/v1': istioTelemetry,
  'gateway.networking.k8s.io/v1': gatewayApi,
};

const need = (ok, msg) => (ok ? [] : [msg]);
const isList = (v) => Array.isArray(v) && v.length > 0;

// Envoy Gateway v1alpha1, from its API reference: what each kind requires.
const ENVOY_GATEWAY = {
  EnvoyExtensionPolicy: (s) => [
    ...need(s.targetRef || isList(s.targetRefs) || isList(s.targetSelectors),
      'spec: one of targetRef, targetRefs, targetSelectors is required'),
    ...(s.wasm ?? []).flatMap((w, i) => [
      ...need(w.code && ['HTTP', 'Image', 'ConfigMap'].includes(w.code.type),
        `spec.wasm[${i}].code.type must be HTTP, Image or ConfigMap`),
      ...need(w.code?.type !== 'Image' || w.code.image?.url, `spec.wasm[${i}].code.image.url is required`),
      ...need(w.code?.type !== 'HTTP' || w.code.http?.url, `spec.wasm[${i}].code.http.url is required`),
    ]),
  ],
  Backend: (s) => need(isList(s.endpoints), 'spec.endpoints is required'),
  EnvoyPatchPolicy: (s) => [
    ...need(s.type === 'JSONPatch', 'spec.type must be JSONPatch'),
    ...need(s.targetRef?.kind && s.targetRef?.name, 'spec.targetRef (kind, name) is required'),
    ...need(isList(s.jsonPatches), 'spec.jsonPatches is required'),
    ...(s.jsonPatches ?? []).flatMap((p, i) => need(p.type && p.name && p.operation?.op,
      `spec.jsonPatches[${i}]: type, name and operation.op are required`)),
  ],
};

function check(obj) {
  const { apiVersion, kind } = obj ?? {};
  const errors = [];
  if (!obj?.metadata?.name) errors.push('metadata.name is required');
  const models = PACKAGED[apiVersion];
  if (models && typeof models[kind] === 'function') {
    try {
      new models[kind](obj).validate();
    } catch (e) {
      errors.push(String(e.message ?? e));
    }
    return { schema: `packaged ${apiVersion} ${kind}`, errors };
  }
  if (apiVersion === 'gateway.envoyproxy.io/v1alpha1' && ENVOY_GATEWAY[kind]) {
    errors.push(...ENVOY_GATEWAY[kind](obj.spec ?? {}));
    return { schema: `Envoy Gateway API reference ${kind}`, errors };
  }
  return { schema: null, errors: [...errors, `no schema for ${apiVersion} ${kind}`] };
}

const documents = [];
for (const file of process.argv.slice(2)) {
  parseAllDocuments(readFileSync(file, 'utf8')).forEach((d, index) => {
    if (d.errors.length) {
      documents.push({ file, index, errors: d.errors.map((e) => e.message) });
      return;
    }
    const obj = d.toJS();
    if (obj === null) return;
    documents.push({ file, index, apiVersion: obj.apiVersion, kind: obj.kind, name: obj.metadata?.name, ...check(obj) });
  });
}
const ok = documents.length > 0 && documents.every((d) => d.errors.length === 0);
process.stdout.write(`${JSON.stringify({ ok, documents })}\n`);
process.exit(ok ? 0 : 1);
