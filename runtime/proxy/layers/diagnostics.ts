// The request path's diagnostics_channel events, so that tools can watch requests without patching
// Sluice: `sluice:proxy:request-start` ({ listener, request }) when a request enters a listener,
// `sluice:proxy:request-end` ({ listener, request, status, route, cluster, errorCode, durationMs })
// once it is answered, reset or abandoned. Published only while someone subscribes.

import diagnostics from 'node:diagnostics_channel';

export const requestStart = diagnostics.channel('sluice:proxy:request-start');
export const requestEnd = diagnostics.channel('sluice:proxy:request-end');
