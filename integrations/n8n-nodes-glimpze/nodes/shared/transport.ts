/**
 * Calls to a Glimpze server: which key each path takes, and Glimpze's problem+json errors turned
 * into n8n errors that name the failing field (`$.content.status: …`).
 *
 * `/v1/…` takes the project API key (`gzp_…`), `/ingest/{feed}` the feed's write key (`gzw_…`).
 * Both come from the "Glimpze API" credential; the request goes through n8n's own HTTP helper.
 */
import { createHash } from 'crypto';
import { NodeApiError, NodeOperationError } from 'n8n-workflow';
import type {
	IDataObject,
	IExecuteFunctions,
	IHookFunctions,
	IHttpRequestMethods,
	IHttpRequestOptions,
	IWebhookFunctions,
	JsonObject,
} from 'n8n-workflow';

export const CREDENTIAL = 'glimpzeApi';

export type GlimpzeCredentials = { serverUrl: string; apiKey?: string; writeKey?: string };
export type Context = IExecuteFunctions | IHookFunctions | IWebhookFunctions;
export type KeyKind = 'api' | 'write';

export type Call = {
	method: IHttpRequestMethods;
	path: string;
	key: KeyKind;
	body?: IDataObject;
	qs?: IDataObject;
	idempotencyKey?: string;
};

export type Answer = { statusCode: number; body: IDataObject; headers: IDataObject };

const KEY_NAMES: Record<KeyKind, { field: 'apiKey' | 'writeKey'; label: string }> = {
	api: { field: 'apiKey', label: 'an API key (gzp_…)' },
	write: { field: 'writeKey', label: "the feed's write key (gzw_…)" },
};

export async function credentialsOf(ctx: Context): Promise<GlimpzeCredentials> {
	const creds = (await ctx.getCredentials(CREDENTIAL)) as unknown as GlimpzeCredentials;
	if (!creds?.serverUrl) {
		throw new NodeOperationError(ctx.getNode(), 'The Glimpze credential has no server URL');
	}
	return creds;
}

/** The key a call needs, or a clear error naming the credential field to fill in. */
function keyFor(ctx: Context, creds: GlimpzeCredentials, kind: KeyKind, path: string): string {
	const key = creds[KEY_NAMES[kind].field];
	if (!key) {
		throw new NodeOperationError(
			ctx.getNode(),
			`The Glimpze credential needs ${KEY_NAMES[kind].label} for ${path}`,
			{ description: 'Open the credential and fill in the missing key.' },
		);
	}
	return key;
}

/** One line per field Glimpze refused, e.g. `$.content.status: missing required field`. */
export function describeProblem(body: unknown): { message: string; description?: string } {
	if (!body || typeof body !== 'object') return { message: 'Glimpze refused the request' };
	const problem = body as { title?: string; detail?: string; code?: string; errors?: Array<{ path?: string; message?: string }> };
	const fields = (problem.errors ?? []).map((e) => `${e.path ?? '$'}: ${e.message ?? ''}`);
	const message = [problem.title ?? 'Glimpze refused the request', ...fields].join(' — ');
	const description = [problem.detail, problem.code ? `(code: ${problem.code})` : undefined]
		.filter(Boolean)
		.join(' ');
	return { message, description: description || undefined };
}

/** Call Glimpze; a non-2xx answer becomes a NodeApiError carrying Glimpze's problem details. */
export async function glimpzeRequest(
	ctx: Context,
	creds: GlimpzeCredentials,
	call: Call,
	itemIndex?: number,
): Promise<Answer> {
	const headers: IDataObject = {
		Authorization: `Bearer ${keyFor(ctx, creds, call.key, call.path)}`,
		Accept: 'application/json',
	};
	if (call.idempotencyKey) headers['Idempotency-Key'] = call.idempotencyKey;
	const options: IHttpRequestOptions = {
		method: call.method,
		url: `${creds.serverUrl.replace(/\/+$/, '')}${call.path}`,
		headers,
		qs: call.qs,
		body: call.body,
		json: true,
		returnFullResponse: true,
		ignoreHttpStatusErrors: true,
	};
	let answer: Answer;
	try {
		answer = (await ctx.helpers.httpRequest(options)) as Answer;
	} catch (error) {
		throw new NodeApiError(ctx.getNode(), { message: (error as Error).message } as JsonObject, {
			message: `Could not reach Glimpze at ${creds.serverUrl}`,
			description: (error as Error).message,
			itemIndex,
		});
	}
	if (answer.statusCode < 200 || answer.statusCode >= 300) {
		const { message, description } = describeProblem(answer.body);
		throw new NodeApiError(ctx.getNode(), (answer.body ?? {}) as JsonObject, {
			message: `${message} (HTTP ${answer.statusCode})`,
			description,
			httpCode: String(answer.statusCode),
			itemIndex,
		});
	}
	return answer;
}

/**
 * An `Idempotency-Key` that is the same when n8n retries a node (Retry On Fail) and different for
 * every other send: the n8n instance's own id (unique per install), the workflow, the execution,
 * the node, the node's run in this execution (loops) and the item. Nothing time-based: an
 * expression such as `$now` would change between the retries it is meant to deduplicate.
 */
export function idempotencyKey(parts: {
	instanceId: string;
	workflowId: string | undefined;
	executionId: string;
	nodeName: string;
	runIndex: number;
	itemIndex: number;
}): string {
	const text = [
		parts.instanceId,
		parts.workflowId ?? '',
		parts.executionId,
		parts.nodeName,
		String(parts.runIndex),
		String(parts.itemIndex),
	].join('\u001f');
	return `n8n-${createHash('sha256').update(text).digest('hex').slice(0, 48)}`;
}

/** The derived key for item `itemIndex` of the running node (see `idempotencyKey`). */
export function itemIdempotencyKey(ctx: IExecuteFunctions, itemIndex: number): string {
	let runIndex = 0;
	try {
		runIndex = Number(ctx.getWorkflowDataProxy(itemIndex).$thisRunIndex) || 0;
	} catch {
		runIndex = 0; // older n8n: one run per execution is the common case
	}
	return idempotencyKey({
		instanceId: ctx.getInstanceId(),
		workflowId: ctx.getWorkflow().id,
		executionId: ctx.getExecutionId(),
		nodeName: ctx.getNode().name,
		runIndex,
		itemIndex,
	});
}
