// The Node side of the client's WebSocket seam (Node 20 has no global WebSocket).
// TLS certificates are not what authenticates a Hush server — the handshake
// pins its identity key — so a self-signed certificate is accepted unless a CA
// is given.
import WebSocket from 'ws';
import type { WebSocketFactory, WebSocketLike } from '../core/client.ts';

export function nodeWebSocket(tls: { ca?: string | Buffer } = {}): WebSocketFactory {
  return (url) =>
    new WebSocket(url, {
      perMessageDeflate: false,
      ...(tls.ca ? { ca: tls.ca } : { rejectUnauthorized: false }),
    }) as unknown as WebSocketLike;
}
