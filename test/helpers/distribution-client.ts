// A bare distribution-protocol client for tests: opens the stream (TLS verified with a given root,
// or plaintext), says hello with a token, waits for the trust bundle and sends CSRs, answering
// each with the controller's CertificateResponse.
import { credentials, Metadata, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { distributionProtocol, type AgentMessage, type CertificateResponseMessage, type ControllerMessage } from '../../runtime/index.ts';

export interface TestStream {
  /** The roots the controller sent when it accepted the stream. */
  trustBundle: Promise<string>;
  /** Rejects with the stream's error if it ends first. */
  csr(csrPem: string): Promise<CertificateResponseMessage>;
  /** The error that ended the stream. */
  ended: Promise<ServiceError>;
  close(): void;
}

export function openStream(address: string, rootPem: string | undefined, token: string, nodeName: string): TestStream {
  const { client } = distributionProtocol();
  const c = new client(address, rootPem ? credentials.createSsl(Buffer.from(rootPem)) : credentials.createInsecure());
  const stream = c.Stream(new Metadata()) as ClientDuplexStream<AgentMessage, ControllerMessage>;
  const waiting = new Map<string, (r: CertificateResponseMessage) => void>();
  let gotBundle!: (roots: string) => void;
  const trustBundle = new Promise<string>((resolve) => (gotBundle = resolve));
  const ended = new Promise<ServiceError>((resolve) => stream.on('error', resolve));
  stream.on('data', (m: ControllerMessage) => {
    if (m.trustBundle) gotBundle(m.trustBundle.roots);
    if (m.certificate) waiting.get(m.certificate.requestId)?.(m.certificate);
  });
  stream.write({ hello: { nodeName, token, haveModules: [], lastVersion: '' } });
  let n = 0;
  return {
    trustBundle,
    ended,
    csr: (csrPem) => {
      const requestId = `r${++n}`;
      const answer = new Promise<CertificateResponseMessage>((resolve) => waiting.set(requestId, resolve));
      stream.write({ csr: { requestId, csr: csrPem } });
      return Promise.race([answer, ended.then((e) => Promise.reject(new Error(`stream ended before the answer: ${e.details}`)))]);
    },
    close: () => {
      stream.cancel();
      c.close();
    },
  };
}

/** A logger that keeps every line (tests assert on what the controller logged). */
export function recordingLogger(): { lines: Array<Record<string, unknown>>; write: (line: string) => void } {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, write: (line) => void lines.push(JSON.parse(line)) };
}
