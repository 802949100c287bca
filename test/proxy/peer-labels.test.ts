// Workload labels of captured traffic in the istio_* metrics: both sides, the reporter, unknown
// peers, mTLS, and the cap on series.
import test from 'ava';
import { MetricStore } from '../../runtime/host/metrics.ts';
import { peerLabels, type Peer } from '../../runtime/proxy/peer-labels.ts';
import { MAX_SERIES, Telemetry } from '../../runtime/proxy/telemetry.ts';

const web: Peer = { workload: 'web', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/web', app: 'web' };
const db: Peer = { workload: 'db', namespace: 'data', principal: 'spiffe://cluster.local/ns/data/sa/db', app: '' };
const exchange = { status: 200, requestBytes: 10, responseBytes: 20, cluster: '10.0.0.7:5432' };
const series = (text: string, metric: string) => text.split('\n').filter((l) => l.startsWith(`${metric}{`));

test('both sides with the reporter; an unknown side and an absent app read "unknown"; mTLS says mutual_tls', (t) => {
  t.is(
    peerLabels('source', web, undefined, false).text,
    'reporter="source",source_workload="web",source_workload_namespace="shop",source_principal="spiffe://cluster.local/ns/shop/sa/web",source_app="web",' +
      'destination_workload="unknown",destination_workload_namespace="unknown",destination_principal="unknown",destination_app="unknown",connection_security_policy="none"',
  );
  t.is(
    peerLabels('destination', web, db, true).text,
    'reporter="destination",source_workload="web",source_workload_namespace="shop",source_principal="spiffe://cluster.local/ns/shop/sa/web",source_app="web",' +
      'destination_workload="db",destination_workload_namespace="data",destination_principal="spiffe://cluster.local/ns/data/sa/db",destination_app="unknown",connection_security_policy="mutual_tls"',
  );
  // One object per distinct pair.
  t.is(peerLabels('source', web, db, false), peerLabels('source', web, db, false));
  t.not(peerLabels('source', web, db, false).key, peerLabels('destination', web, db, false).key);
});

test('telemetry: a series per pair, the labels first; without peers the reporter is source, as before', (t) => {
  const telemetry = new Telemetry(new MetricStore(), () => []);
  telemetry.request('capture-outbound', '1.1', exchange, 1, peerLabels('source', web, db, false));
  telemetry.request('capture-outbound', '1.1', exchange, 1, peerLabels('source', web, db, false));
  telemetry.request('capture-outbound', '1.1', exchange, 1, peerLabels('source', db, web, false));
  telemetry.request('plain', '1.1', exchange, 1);
  telemetry.tcpOpened('capture-inbound', '10.0.0.7:5432', peerLabels('destination', web, db, true));
  const text = telemetry.render();
  t.deepEqual(series(text, 'istio_requests_total').map((l) => [/source_workload="(\w+)"/.exec(l)?.[1], l.slice(l.lastIndexOf(' ') + 1)]), [['web', '2'], ['db', '1'], [undefined, '1']]);
  t.true(text.includes(`istio_requests_total{${peerLabels('source', web, db, false).text},request_protocol="http",response_code="200",destination_service="10.0.0.7:5432",sluice_listener="capture-outbound"} 2\n`));
  t.true(text.includes('istio_requests_total{reporter="source",request_protocol="http",response_code="200",destination_service="10.0.0.7:5432",sluice_listener="plain"} 1\n'));
  t.true(text.includes(`istio_tcp_connections_opened_total{${peerLabels('destination', web, db, true).text},destination_service="10.0.0.7:5432",sluice_listener="capture-inbound"} 1\n`));
  t.false(text.includes('sluice_telemetry_series_overflow_total'));
});

test(`telemetry: past ${MAX_SERIES} series a new pair is counted without its workload labels, and the overflow is counted`, (t) => {
  const telemetry = new Telemetry(new MetricStore(), () => []);
  const peer = (i: number): Peer => ({ ...web, workload: `w${i}` });
  for (let i = 0; i < MAX_SERIES; i++) telemetry.request('capture-outbound', '1.1', exchange, 1, peerLabels('source', peer(i), db, false));
  // A known pair still gets its series; a new one goes to the series without peers.
  telemetry.request('capture-outbound', '1.1', exchange, 1, peerLabels('source', peer(0), db, false));
  telemetry.request('capture-outbound', '1.1', exchange, 1, peerLabels('source', peer(MAX_SERIES), db, false));
  telemetry.request('capture-outbound', '1.1', exchange, 1, peerLabels('source', peer(MAX_SERIES + 1), db, false));
  const text = telemetry.render();
  const requests = series(text, 'istio_requests_total');
  t.is(requests.length, MAX_SERIES + 1);
  t.true(requests.includes(`istio_requests_total{${peerLabels('source', peer(0), db, false).text},request_protocol="http",response_code="200",destination_service="10.0.0.7:5432",sluice_listener="capture-outbound"} 2`));
  t.true(requests.includes('istio_requests_total{reporter="source",request_protocol="http",response_code="200",destination_service="10.0.0.7:5432",sluice_listener="capture-outbound"} 2'));
  t.true(text.includes('sluice_telemetry_series_overflow_total 2\n'));
});
