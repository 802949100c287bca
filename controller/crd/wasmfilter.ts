// The WasmFilter custom resource (sluice.dev/v1alpha1): its structural OpenAPI schema with CEL
// rules and defaults, printer columns and status subresource. This is the one source of truth;
// deploy/crds/wasmfilter.yaml is generated from it (`npm run gen-crds`).

import { DEFAULT_LIMITS } from '../../runtime/index.ts';

/** The longest message a status field below holds (a node's rejection, a rollback); longer ones are cut. */
export const STATUS_MESSAGE_MAX = 4096;

/** `message` cut to `max` characters (ending in "..."), as the status schema allows. */
export const capMessage = (message: string, max = STATUS_MESSAGE_MAX): string => (message.length > max ? `${message.slice(0, max - 3)}...` : message);

/** A module digest as status and sources write it (`sha256:<hex>`, or the hex alone), as hex. */
export const digestHex = (digest: string): string => digest.replace(/^sha256:/, '');

export const GROUP = 'sluice.dev';
export const VERSION = 'v1alpha1';
export const KIND = 'WasmFilter';
export const PLURAL = 'wasmfilters';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const PHASES = ['AUTHN', 'AUTHZ', 'STATS', 'UNSPECIFIED'] as const;
export const DIRECTIONS = ['INBOUND', 'OUTBOUND', 'BOTH'] as const;
export const FAIL_STRATEGIES = ['FAIL_CLOSE', 'FAIL_OPEN', 'FAIL_RELOAD'] as const;
export const PULL_POLICIES = ['IfNotPresent', 'Always'] as const;
export const CONDITION_TYPES = ['Accepted', 'Validated', 'Ready', 'Degraded'] as const;

export interface WasmFilterSpec {
  url?: string;
  sha256?: string;
  configMap?: { name: string; key: string };
  imagePullPolicy?: (typeof PULL_POLICIES)[number];
  imagePullSecret?: string;
  rootId?: string;
  vmId?: string;
  pluginConfig?: unknown;
  vmConfig?: { env?: Array<{ name: string; value?: string; valueFrom?: 'INLINE' }> };
  phase?: (typeof PHASES)[number];
  priority?: number;
  selector?: { matchLabels?: Record<string, string> };
  match?: Array<{ direction?: (typeof DIRECTIONS)[number]; ports?: number[] }>;
  failStrategy?: (typeof FAIL_STRATEGIES)[number];
  limits?: { callBudgetMs?: number; memoryBytes?: number; bodyBytes?: number };
  capabilities?: { httpCalls?: boolean | string[]; sharedData?: boolean; sharedQueues?: boolean; foreignFunctions?: boolean };
  rollout?: { percent?: number; paused?: boolean };
}

export interface Condition {
  type: (typeof CONDITION_TYPES)[number];
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface WasmFilterStatus {
  observedGeneration?: number;
  digest?: string;
  conditions?: Condition[];
  nodes?: NodesStatus;
  rollout?: RolloutStatus;
}

export interface NodesStatus {
  ready: number;
  total: number;
  /** Nodes that refused a version of the filter (the first few, by node name). */
  rejected?: Array<{ node: string; version: string; message: string }>;
}

/** A version of a filter as the rollout keeps it: enough to send it to nodes again. */
export interface FilterVersionRef {
  /** node-config.ts filterVersion: module digest and configuration. */
  version: string;
  /** sha256:<hex> of the module. */
  digest: string;
  /** Where the module came from (to fetch its bytes again after a restart). */
  source: Pick<WasmFilterSpec, 'url' | 'sha256' | 'configMap' | 'imagePullSecret'>;
  /** The versioned spec fields (node-config.ts VERSIONED_FIELDS). */
  config: Record<string, unknown>;
}

export const ROLLOUT_PHASES = ['Stable', 'Canary', 'RolledBack'] as const;

export interface RolloutStatus {
  phase: (typeof ROLLOUT_PHASES)[number];
  /** The last good version: what every node outside the canary runs. */
  stable?: FilterVersionRef;
  /** The version being tried on `canaryNodes`. */
  canary?: FilterVersionRef;
  canaryNodes?: string[];
  /** When the phase began (the canary's soak starts here). */
  since: string;
  /** RolledBack: the version that was rolled back, why (NodeRejected, FailureThreshold) and the details. */
  failedVersion?: string;
  reason?: string;
  message?: string;
}

export interface WasmFilter {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; generation?: number; resourceVersion?: string; uid?: string; creationTimestamp?: string | Date };
  spec: WasmFilterSpec;
  status?: WasmFilterStatus;
}

type Schema = Record<string, unknown>;

const str = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra });
const int = (description: string, minimum: number, maximum: number, extra: Schema = {}): Schema => ({ type: 'integer', format: 'int64', minimum, maximum, description, ...extra });
const obj = (description: string, properties: Record<string, Schema>, extra: Schema = {}): Schema => ({ type: 'object', description, properties, ...extra });
const enumOf = (description: string, values: readonly string[], def?: string): Schema => ({ type: 'string', enum: [...values], ...(def ? { default: def } : {}), description });
const rule = (rule: string, message: string, extra: Schema = {}): Schema => ({ rule, message, ...extra });

// Kubernetes object names (DNS-1123 subdomain) and label-map limits, so CEL cost stays bounded.
const NAME_PATTERN = '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$';

const specSchema: Schema = obj(
  'What the filter is, where it applies, and what happens when it fails.',
  {
    url: str('Where the module comes from: oci://registry/repo:tag, oci://registry/repo@sha256:<hex>, https://host/path.wasm, or http:// (insecure; for loopback and tests). Exactly one of url and configMap.', {
      maxLength: 2048,
      'x-kubernetes-validations': [
        rule("self.startsWith('oci://') || self.startsWith('https://') || self.startsWith('http://')", 'url must start with oci://, https:// or http://'),
      ],
    }),
    sha256: str('sha256 of the Wasm module bytes, 64 lower-case hex digits. Required for https:// and http:// urls; with oci:// it pins the module.', { pattern: '^[0-9a-f]{64}$' }),
    configMap: obj(
      'A ConfigMap in the same namespace whose binaryData[key] holds the module (small modules; ConfigMaps are limited to 1 MiB).',
      {
        name: str('Name of the ConfigMap.', { maxLength: 253, pattern: NAME_PATTERN }),
        key: str('Key in binaryData.', { maxLength: 253, pattern: '^[-._a-zA-Z0-9]+$' }),
      },
      { required: ['name', 'key'] },
    ),
    imagePullPolicy: enumOf('IfNotPresent uses a module already cached by digest; Always fetches again on every validation.', PULL_POLICIES, 'IfNotPresent'),
    imagePullSecret: str('A Secret of type kubernetes.io/dockerconfigjson in the same namespace with credentials for the oci:// registry.', { maxLength: 253, pattern: NAME_PATTERN }),
    rootId: str('Root id handed to the module (proxy_on_context_create / get_property plugin_root_id).', { default: '', maxLength: 256 }),
    vmId: str('VM id: filters with the same vmId and module share a VM.', { default: '', maxLength: 256 }),
    pluginConfig: {
      description: 'Any JSON; handed to proxy_on_configure as JSON text (a string as-is).',
      'x-kubernetes-preserve-unknown-fields': true,
    },
    vmConfig: obj('The VM configuration.', {
      env: {
        type: 'array',
        description: 'Environment variables the module sees through WASI.',
        maxItems: 64,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
        items: obj(
          'An environment variable.',
          {
            name: str('Variable name.', { maxLength: 256, pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }),
            value: str('Its value.', { maxLength: 4096, default: '' }),
            valueFrom: enumOf('Where the value comes from: INLINE, the value field (Istio\'s default). Istio\'s HOST (the proxy\'s own environment) is not offered: the node proxy\'s environment is not the filter\'s to read.', ['INLINE'] as const, 'INLINE'),
          },
          { required: ['name'] },
        ),
      },
    }),
    phase: enumOf('Where in the chain the filter runs: AUTHN, then AUTHZ, then STATS, then UNSPECIFIED.', PHASES, 'UNSPECIFIED'),
    priority: int('Order within a phase: higher runs first.', -2147483648, 2147483647, { format: 'int32', default: 0 }),
    selector: obj('Workloads (pods) the filter applies to; empty or absent: every pod in scope.', {
      matchLabels: {
        type: 'object',
        description: 'Pods whose labels include all of these.',
        maxProperties: 64,
        additionalProperties: { type: 'string', maxLength: 63 },
      },
    }),
    match: {
      type: 'array',
      description: 'Traffic the filter sees; absent: all. An item matches a direction and, if ports are given, one of those ports.',
      maxItems: 32,
      items: obj('A traffic selector.', {
        direction: enumOf('INBOUND (to the pod), OUTBOUND (from the pod) or BOTH.', DIRECTIONS, 'BOTH'),
        ports: { type: 'array', description: 'Destination ports; absent: all.', maxItems: 64, items: { type: 'integer', format: 'int32', minimum: 1, maximum: 65535 } },
      }),
    },
    failStrategy: enumOf(
      'What a failing filter does to requests: FAIL_CLOSE answers 5xx, FAIL_OPEN skips the filter, FAIL_RELOAD starts a fresh VM. Covers fetch and start-up failures too: a module that cannot be fetched or refuses its configuration is skipped only with FAIL_OPEN.',
      FAIL_STRATEGIES,
      'FAIL_CLOSE',
    ),
    limits: obj(`Containment limits; absent fields take the host's defaults (callBudgetMs ${DEFAULT_LIMITS.callBudgetMs}, memoryBytes ${DEFAULT_LIMITS.memoryBytes}, bodyBytes ${DEFAULT_LIMITS.bodyBytes}).`, {
      callBudgetMs: int('Wall-clock budget of one call into the filter, in ms.', 1, 60_000),
      memoryBytes: int('Ceiling of the VM linear memory (at least one 64 KiB page, at most 4 GiB).', 65_536, 4 * 1024 ** 3),
      bodyBytes: int('Largest body the filter may buffer.', 1, 1024 ** 3),
    }),
    capabilities: obj('Host functions the filter may use; absent fields: allowed.', {
      httpCalls: {
        // A structural schema cannot say "boolean or list", and CEL cannot see a field without a
        // type, so the controller checks this one (Accepted=False, reason InvalidSpec).
        description: 'proxy_http_call: true for any cluster, a list of cluster names for only those, false for none. Checked by the controller (Accepted=False, reason InvalidSpec).',
        'x-kubernetes-preserve-unknown-fields': true,
      },
      sharedData: { type: 'boolean', description: 'proxy_get/set_shared_data.' },
      sharedQueues: { type: 'boolean', description: 'Shared queues.' },
      foreignFunctions: { type: 'boolean', description: 'proxy_call_foreign_function.' },
    }),
    rollout: obj(
      'How the filter reaches nodes.',
      {
        percent: int('Percent of nodes that run this version.', 0, 100, { format: 'int32', default: 100 }),
        paused: { type: 'boolean', default: false, description: 'Stop the rollout where it is.' },
      },
      { default: {} },
    ),
  },
  {
    'x-kubernetes-validations': [
      rule('has(self.url) != has(self.configMap)', 'exactly one of url and configMap must be set'),
      rule("!has(self.url) || self.url.startsWith('oci://') || has(self.sha256)", 'sha256 is required when url is https:// or http:// (the module bytes are checked against it)'),
      rule("!has(self.imagePullSecret) || (has(self.url) && self.url.startsWith('oci://'))", 'imagePullSecret applies only to oci:// urls'),
    ],
  },
);

const conditionSchema: Schema = obj(
  'The state of one aspect of the filter.',
  {
    type: enumOf('Accepted, Validated, Ready or Degraded.', CONDITION_TYPES),
    status: enumOf('True, False or Unknown.', ['True', 'False', 'Unknown']),
    reason: str('One CamelCase word a program can match on.', { maxLength: 1024 }),
    message: str('What happened and what to do.', { maxLength: 32768 }),
    lastTransitionTime: str('When status last changed.', { format: 'date-time' }),
    observedGeneration: int('The generation this condition was computed for.', 0, Number.MAX_SAFE_INTEGER),
  },
  { required: ['type', 'status', 'reason', 'message', 'lastTransitionTime'] },
);

const statusSchema: Schema = obj('What the controller observed; written by the controller only.', {
  observedGeneration: int('The generation the status describes.', 0, Number.MAX_SAFE_INTEGER),
  digest: str('sha256:<hex> of the module bytes in force: the last version that validated.', { maxLength: 80 }),
  conditions: { type: 'array', maxItems: 8, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'], items: conditionSchema },
  nodes: obj('Nodes running the filter, from what their node agents answered.', {
    ready: int('Nodes that run the version they should run.', 0, 1_000_000),
    total: int('Nodes the filter should reach (nodes with a workload it selects, whose agent is connected).', 0, 1_000_000),
    rejected: {
      type: 'array',
      maxItems: 5,
      description: 'Nodes that refused (NACKed) a version of the filter, the first five by node name.',
      items: obj('A node\'s refusal.', {
        node: str('The node.', { maxLength: 253 }),
        version: str('The filter version it refused.', { maxLength: 64 }),
        message: str('What its agent said.', { maxLength: STATUS_MESSAGE_MAX }),
      }),
    },
  }),
  rollout: obj('Where the rollout of the filter\'s versions stands (docs/platform.md#rollouts); kept here so a restarted or new leader resumes it.', {
    phase: enumOf('Stable: every node runs the stable version. Canary: canaryNodes try the canary version. RolledBack: the canary failed; every node runs the stable version until the spec changes.', ROLLOUT_PHASES),
    stable: versionRefSchema('The last good version.'),
    canary: versionRefSchema('The version being tried.'),
    canaryNodes: { type: 'array', maxItems: 10_000, description: 'The nodes that run the canary version, chosen when the canary started.', items: { type: 'string', maxLength: 253 } },
    since: str('When the phase began (the soak time counts from here).', { format: 'date-time' }),
    failedVersion: str('RolledBack: the version that was rolled back.', { maxLength: 64 }),
    reason: str('RolledBack: NodeRejected or FailureThreshold.', { maxLength: 64 }),
    message: str('RolledBack: which nodes and what they said.', { maxLength: STATUS_MESSAGE_MAX }),
  }),
});

function versionRefSchema(description: string): Schema {
  return obj(description, {
    version: str('Module digest prefix and configuration hash.', { maxLength: 64 }),
    digest: str('sha256:<hex> of the module.', { maxLength: 80 }),
    source: obj('Where the module came from.', {
      url: str('spec.url', { maxLength: 2048 }),
      sha256: str('spec.sha256', { maxLength: 64 }),
      configMap: obj('spec.configMap', { name: str('name', { maxLength: 253 }), key: str('key', { maxLength: 253 }) }),
      imagePullSecret: str('spec.imagePullSecret', { maxLength: 253 }),
    }),
    config: { type: 'object', description: 'The versioned spec fields (rootId, vmId, pluginConfig, vmConfig, failStrategy, limits, capabilities).', 'x-kubernetes-preserve-unknown-fields': true },
  });
}

/** The CustomResourceDefinition object. */
export function wasmFilterCrd(): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PLURAL}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: { plural: PLURAL, singular: 'wasmfilter', kind: KIND, listKind: `${KIND}List`, shortNames: ['wf'], categories: ['sluice'] },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Validated', type: 'string', jsonPath: '.status.conditions[?(@.type=="Validated")].status' },
            { name: 'Ready Nodes', type: 'integer', jsonPath: '.status.nodes.ready' },
            { name: 'Digest', type: 'string', jsonPath: '.status.digest' },
            { name: 'Phase', type: 'string', jsonPath: '.spec.phase', priority: 1 },
            { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Validated")].reason', priority: 1 },
            { name: 'Rollout', type: 'string', jsonPath: '.status.rollout.phase', priority: 1 },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: obj('A proxy-wasm filter published to Sluice node proxies. In the controller root namespace it applies to every namespace.', {
              apiVersion: { type: 'string' },
              kind: { type: 'string' },
              metadata: { type: 'object' },
              spec: specSchema,
              status: statusSchema,
            }, { required: ['spec'] }),
          },
        },
      ],
    },
  };
}

/** The variables a filter's VMs see through WASI (vmConfig.env), name to value, in the spec's order. */
export function vmEnvironment(spec: WasmFilterSpec): Record<string, string> {
  return Object.fromEntries((spec.vmConfig?.env ?? []).map((e) => [e.name, e.value ?? '']));
}
