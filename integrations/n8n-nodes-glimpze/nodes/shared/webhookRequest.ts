/** What the nodes read from an incoming HTTP request in n8n: the raw body bytes, and how to refuse. */
import type { IWebhookFunctions, IWebhookResponseData } from 'n8n-workflow';

type RawRequest = { rawBody?: Uint8Array; readRawBody?: () => Promise<void> };

/** The body exactly as received (signatures cover these bytes), or undefined when n8n kept none. */
export async function rawBodyOf(ctx: IWebhookFunctions): Promise<Uint8Array | undefined> {
	const req = ctx.getRequestObject() as unknown as RawRequest;
	if (!req.rawBody && typeof req.readRawBody === 'function') await req.readRawBody();
	return req.rawBody instanceof Uint8Array ? req.rawBody : undefined;
}

/** Answer the request with `status` and a short reason, and start nothing in the workflow. */
export function refuse(ctx: IWebhookFunctions, status: number, reason: string): IWebhookResponseData {
	ctx.getResponseObject().status(status).json({ error: reason });
	return { noWebhookResponse: true };
}

export function nowSeconds(): number {
	return Math.floor(Date.now() / 1000);
}

export function parseJson(raw: Uint8Array): Record<string, unknown> | undefined {
	try {
		const value: unknown = JSON.parse(new TextDecoder().decode(raw));
		return value !== null && typeof value === 'object' && !Array.isArray(value)
			? (value as Record<string, unknown>)
			: undefined;
	} catch {
		return undefined;
	}
}
