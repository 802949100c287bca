// `sluice push <registry>/<repo>:<tag> [dir]`: builds the filter in dir and pushes it as a Wasm
// OCI artifact, then prints its digests (stderr) and a ready-to-apply WasmFilter (stdout, so that
// `sluice push … | kubectl apply -f -` works).

import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { stringify } from 'yaml';
import { parseOciReference, pushModule, type RegistryAuth } from '../../controller/source/index.ts';
import { buildFilterDir } from './build.ts';

/** Credentials for the registry when no flags give them (flags win). */
export const ENV_REGISTRY_USERNAME = 'SLUICE_REGISTRY_USERNAME';
export const ENV_REGISTRY_PASSWORD = 'SLUICE_REGISTRY_PASSWORD';

export interface PushArgs {
  reference: string;
  dir: string;
  username?: string;
  password?: string;
  plainHttp: boolean;
}

function credentials(args: PushArgs, env: NodeJS.ProcessEnv): RegistryAuth | undefined {
  const username = args.username ?? env[ENV_REGISTRY_USERNAME];
  const password = args.password ?? env[ENV_REGISTRY_PASSWORD];
  if (username === undefined && password === undefined) return undefined;
  if (!username || password === undefined) {
    throw new Error(`give both a username and a password (--username/--password, or ${ENV_REGISTRY_USERNAME}/${ENV_REGISTRY_PASSWORD}), or neither`);
  }
  return { username, password };
}

/** The WasmFilter a platform team applies for this push. */
export function wasmFilterYaml(opts: { name: string; url: string; sha256: string; rootId: string; pluginConfig?: unknown; needsSecret: boolean }): string {
  const spec: Record<string, unknown> = { url: opts.url, sha256: opts.sha256 };
  if (opts.rootId !== '') spec.rootId = opts.rootId;
  if (opts.pluginConfig !== undefined) spec.pluginConfig = opts.pluginConfig;
  const doc = { apiVersion: 'sluice.dev/v1alpha1', kind: 'WasmFilter', metadata: { name: opts.name }, spec };
  // YAML 1.1 quoting ("on", "yes" stay strings), as kubectl reads YAML 1.1.
  let text = stringify(doc, { version: '1.1' });
  if (opts.needsSecret) {
    text += '  # the registry needs credentials: name a kubernetes.io/dockerconfigjson Secret of this namespace\n  # imagePullSecret: <secret-name>\n';
  }
  return text;
}

export async function runPush(args: PushArgs, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const ref = parseOciReference(args.reference);
  if (ref.digest) throw new Error(`push to a tag (e.g. ${ref.registry}/${ref.repository}:v1), not a digest: the digest is printed after the push`);
  const auth = credentials(args, env);
  const built = await buildFilterDir(args.dir, (line) => process.stderr.write(`${line}\n`));
  const module = await readFile(built.wasm);
  const pushed = await pushModule(args.reference, module, {
    auth,
    plainHttp: args.plainHttp,
    authHint: `pass --username and --password (or ${ENV_REGISTRY_USERNAME} and ${ENV_REGISTRY_PASSWORD}) of a user who may push there`,
    config: { type: 'envoy_proxy_wasm_api_v1', abiVersions: ['proxy_abi_version_0_2_1'], rootIds: [built.rootId] },
    annotations: { 'org.opencontainers.image.title': built.name },
  });
  const hex = pushed.digest.slice('sha256:'.length);
  process.stderr.write(
    `pushed ${pushed.reference}\n` +
      `  manifest  ${pushed.manifestDigest}\n` +
      `  module    ${pushed.digest} (${module.byteLength} bytes, ${relative(process.cwd(), built.wasm) || built.wasm})\n` +
      `the WasmFilter below is on stdout: \`sluice push ${args.reference} ${args.dir} | kubectl apply -n <namespace> -f -\` applies it\n\n`,
  );
  process.stdout.write(
    wasmFilterYaml({
      name: built.name,
      url: `oci://${ref.registry}/${ref.repository}@${pushed.manifestDigest}`,
      sha256: hex,
      rootId: built.rootId,
      pluginConfig: built.exampleConfig,
      needsSecret: auth !== undefined,
    }),
  );
  return 0;
}
