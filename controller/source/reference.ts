// OCI references (`registry/repository:tag`, `…@sha256:<hex>`, optionally prefixed `oci://`):
// parsed and checked against the distribution spec's grammar, with Docker's defaults.

import { ControllerError } from '../errors.ts';

export interface OciReference {
  /** As written in the reference: `127.0.0.1:5000`, `ghcr.io`, `docker.io`. */
  registry: string;
  /** The host the registry API is reached at (Docker Hub's API is not at docker.io). */
  apiHost: string;
  /** `team/filter` (Docker Hub's single-component names get `library/`). */
  repository: string;
  tag?: string;
  /** `sha256:<64 hex>`; when present it wins over the tag. */
  digest?: string;
}

// Distribution spec: path components are lower-case alphanumerics joined by `.`, `_`, `__` or dashes.
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?$/;

function invalid(text: string, why: string): ControllerError {
  return new ControllerError(
    'SLUICE_ERR_SOURCE_URL',
    `invalid OCI reference ${JSON.stringify(text)}: ${why} (expected [oci://]<registry>/<repository>:<tag> or [oci://]<registry>/<repository>@sha256:<64 hex>, e.g. oci://ghcr.io/team/filter:v1)`,
  );
}

/** Parses `[oci://]registry/repo[:tag][@sha256:hex]`; a missing tag and digest means `latest`. */
export function parseOciReference(text: string): OciReference {
  let rest = text.startsWith('oci://') ? text.slice('oci://'.length) : text;
  if (rest === '') throw invalid(text, 'it is empty');
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw invalid(text, `the digest "${digest}" is not sha256: followed by 64 lower-case hex digits`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(text, `the tag "${tag}" is not valid (letters, digits, _ . -, at most 128, not starting with . or -)`);
  }
  const parts = rest.split('/');
  let registry = 'docker.io';
  // Docker's rule: the first component is a registry when it has a dot or a port, or is localhost.
  if (parts.length > 1 && (parts[0].includes('.') || parts[0].includes(':') || parts[0] === 'localhost')) {
    registry = parts.shift()!;
    if (!HOST.test(registry)) throw invalid(text, `the registry "${registry}" is not a host name or address with an optional port`);
  }
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p))) {
    throw invalid(text, `the repository "${parts.join('/')}" must be lower-case path components (a-z, 0-9, separators . _ -)`);
  }
  let repository = parts.join('/');
  if (registry === 'docker.io' && parts.length === 1) repository = `library/${repository}`;
  const apiHost = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
  if (!tag && !digest) tag = 'latest';
  return { registry, apiHost, repository, tag, digest };
}

/** The reference written back as `registry/repository[:tag][@digest]` (no scheme). */
export function formatOciReference(ref: OciReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** The host part without its port (and without IPv6 brackets). */
export function hostName(hostPort: string): string {
  if (hostPort.startsWith('[')) return hostPort.slice(1, hostPort.indexOf(']'));
  const colon = hostPort.lastIndexOf(':');
  return colon >= 0 ? hostPort.slice(0, colon) : hostPort;
}

/** True for localhost, 127.0.0.0/8 and ::1: addresses whose traffic never leaves the machine. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
