// One "node" of the two-node tunnel test, run inside the node's netns: the node proxy, capture
// (serving the CNI plugin) and the tunnel, as `sluice run --controller --capture-socket` wires
// them, with identities given by the test (from a real CA) instead of the controller's stream.
// Args: a JSON file { config, moduleDir, socket, tunnelListen, trustBundle, identities: [...] }.
// stdin: `reload` applies the config file again (prints `reloaded`); SIGTERM stops everything.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { CaptureServer } from '../../runtime/capture/index.ts';
import { IdentityStore, NodeProxy, parseConfig, parseHostPort, TunnelClient, TunnelServer, type WorkloadIdentity } from '../../runtime/index.ts';
import { log } from '../../runtime/log.ts';

interface Args {
  config: string;
  moduleDir: string;
  socket: string;
  tunnelListen: string;
  trustBundle: string;
  identities: Array<Omit<WorkloadIdentity, 'notAfter'> & { notAfter: string }>;
}

const args = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Args;
const identities = new IdentityStore();
identities.setTrustBundle(args.trustBundle);
for (const i of args.identities) identities.set({ ...i, notAfter: new Date(i.notAfter) });
const load = () => parseConfig(readFileSync(args.config, 'utf8'), args.config, args.moduleDir);

const proxy = await NodeProxy.start(load(), undefined, undefined, { admin: false });
const client = new TunnelClient({ identities, log });
const listen = parseHostPort(args.tunnelListen, 0);
if ('error' in listen) throw new Error(listen.error);
// As run.ts: the tunnel first, then capture, whose same-node traffic goes through the node's own tunnel.
let capture: CaptureServer | undefined;
const server = await TunnelServer.start({ identities, host: listen.host, port: listen.port, log, deliver: (r) => (capture ? capture.deliver(r) : r.refuse(503, 'starting')) });
capture = await CaptureServer.start(args.socket, proxy, log, { client, local: { host: '127.0.0.1', port: server.address().port } });
console.log('ready');

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'reload') {
    void proxy.apply(load()).then(() => console.log('reloaded'), (error: Error) => console.log(`reload failed: ${error.message}`));
  }
});
process.once('SIGTERM', () => {
  void (async () => {
    await Promise.all([capture!.stop(0), server.close(0)]);
    client.close();
    await proxy.stop(0);
    process.exit(0);
  })();
});
