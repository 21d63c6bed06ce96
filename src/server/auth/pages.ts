/**
 * The few HTML pages the OAuth proxy shows a browser: the consent page and one-line messages. They run
 * no script and cannot be framed.
 *
 * @module
 */
import type { Response } from 'express';
import type { OAuthClientInformationFull } from '@modelcontextprotocol/sdk/shared/auth.js';
import { clientIdMetadataHost } from './client-metadata.js';
import type { TransactionRecord } from './records.js';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Pages are framed by nobody (clickjacking on a consent button) and run no script. */
export function sendPage(res: Response, status: number, html: string): void {
  res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Cache-Control', 'no-store');
  res.status(status).type('html').send(html);
}

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>` +
    '<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}code{word-break:break-all}button{margin-right:.5rem;padding:.4rem 1rem}</style>' +
    `</head><body>${body}</body></html>`;
}

export function messagePage(message: string): string {
  return page('codemode sign-in', `<h1>codemode sign-in</h1><p>${escapeHtml(message)}</p>`);
}

/** Asks the user to approve `client` for the login `txnId`; the form posts to `action`. */
export function consentPage(client: OAuthClientInformationFull, txn: TransactionRecord, txnId: string, action: string): string {
  // client_name is chosen by whoever registered the client: show it, but lead with where the tokens go.
  const name = typeof client.client_name === 'string' && client.client_name !== '' ? client.client_name : client.client_id;
  const scopes = txn.scopes.length > 0 ? `<p>Scopes: <code>${escapeHtml(txn.scopes.join(' '))}</code></p>` : '';
  // A Client ID Metadata Document client: its name is whatever the document's host wrote, but the host is
  // vouched for by https. Lead with the host.
  const host = clientIdMetadataHost(client.client_id);
  const who =
    host === undefined
      ? `<p>An application calling itself <strong>${escapeHtml(name)}</strong> wants to use this codemode server as you.</p>`
      : `<p>An application from <strong class="client-host">${escapeHtml(host)}</strong>, calling itself <strong>${escapeHtml(name)}</strong>, wants to use this codemode server as you.</p>` +
        `<p>It is described by <code>${escapeHtml(client.client_id)}</code>. Approve only if you trust ${escapeHtml(host)}.</p>`;
  return page(
    'Authorize MCP client',
    '<h1>Authorize MCP client?</h1>' +
      who +
      `<p>Tokens will be sent to <code>${escapeHtml(txn.redirectUri)}</code>. Approve only if you started this sign-in from that application.</p>` +
      scopes +
      `<form method="post" action="${escapeHtml(action)}"><input type="hidden" name="txn" value="${escapeHtml(txnId)}">` +
      '<button type="submit" name="action" value="approve">Approve</button><button type="submit" name="action" value="deny">Deny</button></form>',
  );
}
