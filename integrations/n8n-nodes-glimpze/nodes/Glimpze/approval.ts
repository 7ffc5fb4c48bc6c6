/**
 * "Ask for approval and wait": post an approval whose `callback.url` is this execution's resume URL,
 * put the execution to wait (as n8n's Wait node does "On Webhook Call"), and resume it when
 * Glimpze's signed callback arrives.
 *
 * The callback is signed like a webhook delivery (DESIGN §4) with the approval feed's
 * `callback_secret`, read from GET /v1/feeds/{id} with the credential's API key. A callback that
 * fails the check is answered 401 and the execution keeps waiting. `defer` is answered 200 and the
 * execution keeps waiting too (Glimpze sends one callback per action; only approve and reject are
 * final), so the node's one output always carries a final answer: seed 002's callback body
 * `{feed_id, action_type, event_id, timestamp, metadata}`.
 */
import { NodeOperationError, WAIT_INDEFINITELY } from 'n8n-workflow';
import type { IDataObject, IExecuteFunctions, INodeExecutionData, IWebhookFunctions, IWebhookResponseData } from 'n8n-workflow';

import { verifyDelivery } from '../shared/signatures';
import type { GlimpzeCredentials } from '../shared/transport';
import { credentialsOf, glimpzeRequest } from '../shared/transport';
import { nowSeconds, parseJson, rawBodyOf, refuse } from '../shared/webhookRequest';
import { jsonObject, keyOfItem } from './operations';

const FINAL_ACTIONS = ['approve', 'reject'];
const UNIT_MS: Record<string, number> = { minutes: 60_000, hours: 3_600_000, days: 86_400_000 };

/** Where Glimpze should send its answer: n8n's signed resume URL when this n8n has one. */
export function resumeUrlOf(ctx: IExecuteFunctions): string {
	if (typeof ctx.getSignedResumeUrl === 'function') {
		if (typeof ctx.setSignatureValidationRequired === 'function') ctx.setSignatureValidationRequired();
		return ctx.getSignedResumeUrl();
	}
	// n8n before signed resume URLs: the execution's resume URL plus the webhook path ($nodeId).
	const base = ctx.evaluateExpression('{{ $execution.resumeUrl }}', 0) as string;
	return `${base}/${ctx.getNode().id}`;
}

function waitTill(ctx: IExecuteFunctions): Date {
	const options = ctx.getNodeParameter('approvalOptions', 0, {}) as IDataObject;
	const amount = Number(options.limitWaitTime ?? 0);
	if (!amount) return WAIT_INDEFINITELY;
	return new Date(Date.now() + amount * (UNIT_MS[(options.limitUnit as string) ?? 'hours'] ?? UNIT_MS.hours));
}

async function callbackSecret(ctx: IExecuteFunctions | IWebhookFunctions, creds: GlimpzeCredentials, feedId: string) {
	const feed = await glimpzeRequest(ctx, creds, { method: 'GET', path: `/v1/feeds/${encodeURIComponent(feedId)}`, key: 'api' });
	return feed.body;
}

/** Post the approval of the first input item and put the execution to wait. */
export async function askForApproval(ctx: IExecuteFunctions, creds: GlimpzeCredentials): Promise<INodeExecutionData[][]> {
	const feedId = String(ctx.getNodeParameter('feedId', 0) ?? '').trim();
	// Checked before posting: without the secret no answer could be verified, and the approver's
	// click would be lost.
	const feed = await callbackSecret(ctx, creds, feedId);
	if (typeof feed.callback_secret !== 'string' || !feed.callback_secret) {
		throw new NodeOperationError(
			ctx.getNode(),
			`Feed ${feedId} is a ${String(feed.schema_type)} feed: asking for approval needs a feed of schema type "approval"`,
		);
	}
	const body: IDataObject = {
		schema_type: 'approval',
		content: { description: ctx.getNodeParameter('description', 0) as string },
		metadata: jsonObject(ctx, 'Metadata (JSON)', 0, ctx.getNodeParameter('metadata', 0, '{}')),
		intent: { send_push: true },
		callback: { url: resumeUrlOf(ctx), method: 'POST' },
	};
	await glimpzeRequest(
		ctx,
		creds,
		{
			method: 'POST',
			path: `/ingest/${encodeURIComponent(feedId)}`,
			key: 'write',
			body,
			idempotencyKey: keyOfItem(ctx, 0, 'approvalOptions'),
		},
		0,
	);
	await ctx.putExecutionToWait(waitTill(ctx));
	return [ctx.getInputData()];
}

/**
 * The feed whose secret signs the callback: the node's Feed ID, or, when that is an expression n8n
 * cannot resolve here (a waiting webhook has no input item), the feed the callback names. Either
 * way the signature must then verify with that feed's secret, which only the project can read.
 */
function feedOfCallback(ctx: IWebhookFunctions, claimed: unknown): string {
	let configured = '';
	try {
		configured = String(ctx.getNodeParameter('feedId', '') ?? '').trim();
	} catch {
		configured = '';
	}
	return configured || (typeof claimed === 'string' ? claimed : '');
}

/** Glimpze's callback at the resume URL: verified, then resumes the execution with the answer. */
export async function approvalCallback(ctx: IWebhookFunctions): Promise<IWebhookResponseData> {
	const raw = await rawBodyOf(ctx);
	if (!raw || raw.length === 0) return refuse(ctx, 400, 'the callback has no body');
	const answer = parseJson(raw);
	if (!answer) return refuse(ctx, 400, 'the callback is not a JSON object');
	const feedId = feedOfCallback(ctx, answer.feed_id);
	if (!/^[A-Za-z0-9_-]{1,64}$/.test(feedId)) return refuse(ctx, 422, 'the callback names no feed');
	let secrets: string[];
	try {
		const feed = await callbackSecret(ctx, await credentialsOf(ctx), feedId);
		secrets = [feed.callback_secret as string];
	} catch (error) {
		// 503: Glimpze retries the callback later, and the execution keeps waiting meanwhile.
		return refuse(ctx, 503, `could not read the feed's callback secret from Glimpze: ${(error as Error).message}`);
	}
	const verdict = verifyDelivery(ctx.getHeaderData(), raw, secrets, nowSeconds());
	if (!verdict.valid) return refuse(ctx, 401, `invalid signature: ${verdict.reason}`);
	if (answer.feed_id !== feedId) return refuse(ctx, 422, `the callback is not an answer from feed ${feedId}`);
	if (answer.action_type === 'defer') {
		return { webhookResponse: { status: 'waiting', action_type: 'defer' } };
	}
	if (!FINAL_ACTIONS.includes(answer.action_type as string)) {
		return refuse(ctx, 422, 'action_type must be approve, reject or defer');
	}
	return { workflowData: [[{ json: answer as IDataObject }]] };
}
