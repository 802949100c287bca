// What one request carries through the layers of the request path: the listener's state, the
// downstream request and response, the filter stream, and what each layer has decided so far.

import type { ListenerConfig, RetryPolicy, RouteAction, RouteConfig } from '../../config/snapshot.ts';
import type { FilterChain } from '../../host/filter-chain.ts';
import type { HeaderMap } from '../../host/header-map.ts';
import type { HttpStream } from '../../host/http-stream.ts';
import type { StreamInfo } from '../../host/stream.ts';
import type { AccessLog } from '../access-log.ts';
import type { DownstreamRequest, DownstreamResponse } from '../downstream.ts';
import type { PeerLabels } from '../peer-labels.ts';
import type { Router } from '../router.ts';
import type { SpanExporter } from '../span-export.ts';
import type { StreamDeadline } from '../stream-deadline.ts';
import type { Telemetry } from '../telemetry.ts';
import type { StopSignal } from '../stop-signal.ts';
import type { Span } from '../trace-context.ts';
import type { UpstreamErrorCode } from '../upstream-errors.ts';
import type { UpstreamResponse } from '../upstream-pool.ts';
import type { Cluster, UpstreamHost } from '../upstreams.ts';
import type { BodyPump } from './request-body.ts';
import type { Handler } from './compose.ts';

/** What one listener runs with: immutable per snapshot, swapped whole on reload. */
export interface ListenerState {
  readonly config: ListenerConfig;
  readonly chain: FilterChain;
  readonly router: Router;
  readonly clusters: ReadonlyMap<string, Cluster>;
  readonly accessLog?: AccessLog;
  readonly spans?: SpanExporter;
  /** The request path, composed once for the listener (layers/path.ts); built on first use when absent. */
  path?: Handler<Exchange>;
  /** Captured traffic: the workload labels of a finished exchange's istio_* series. */
  readonly peers?: (x: Exchange) => PeerLabels | undefined;
}

export type ConnectionFacts = Required<Pick<StreamInfo, 'source' | 'destination' | 'connection'>> & { tls: boolean };

type ProxyAction = Extract<RouteAction, { kind: 'cluster' }>;

/** One request through the proxy. Fields are filled in by the layers in request order. */
export interface Exchange {
  readonly state: ListenerState;
  readonly telemetry: Telemetry;
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  readonly stream: HttpStream;
  readonly connection: ConnectionFacts;
  /** performance.now() at the request's arrival. */
  readonly started: number;
  deadline?: StreamDeadline;

  // What telemetry, the access log and the span report.
  span?: Span;
  status: number;
  requestBytes: number;
  responseBytes: number;
  cluster: string;
  route: string;
  /** The request is gRPC: Sluice's own replies take gRPC's form (status in grpc-status). */
  grpc: boolean;
  /** Stops the upstream side of the exchange (the client went away). */
  cancel?: () => void;
  /** The client left before its response was complete. */
  clientGone?: boolean;
  /** The stream's deadline passed (its response_code_details): it was answered or reset then. */
  expired?: string;

  // request-headers.ts
  headers?: HeaderMap;
  hasBody?: boolean;
  // route.ts
  routeConfig?: RouteConfig;
  action?: ProxyAction;
  // cluster.ts
  upstreamCluster?: Cluster;
  host?: UpstreamHost;
  /** A filter pinned the endpoint (sluice.upstream_host): retries go there too. */
  pinned?: boolean;
  hashKey?: string;
  // timeout.ts: aborted with the reason the exchange stopped (route timeout, client gone, body interrupted).
  abort?: StopSignal;
  // request-body.ts
  bufferLimit: number;
  policy?: RetryPolicy;
  pump?: BodyPump;
  /** The Content-Length to send upstream when it was held (body-length.ts). */
  holdLength?: boolean;
  bodyLength?: number;
  // retry.ts / upstream-try.ts
  attempt: number;
  tried?: Set<UpstreamHost>;
  /** The last try's upstream and its outcome. */
  current?: UpstreamHost;
  answer?: UpstreamResponse;
  failure?: unknown;
  /** The try is over and another should follow (upstream-try.ts asked retry.ts), after Retry-After when the upstream gave one. */
  again?: boolean;
  retryAfter?: string;
  /** Why the upstream request failed, when it did (upstream-errors.ts). */
  errorCode?: UpstreamErrorCode;
}
